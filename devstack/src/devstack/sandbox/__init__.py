"""What the OpenTickets and Stripe sandboxes share: start-up settings, fault switches, the request log,
the controls under `/_sandbox/`, and the server that runs them from the command line or in a test."""
