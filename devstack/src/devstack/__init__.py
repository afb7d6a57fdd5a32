"""Local protocol stand-ins for the OpenTickets backend."""
