"""Fixed vocabularies the generator draws from."""

from __future__ import annotations

# (city, venue, IANA time zone, sales tax in basis points)
CITIES: tuple[tuple[str, str, str, int], ...] = (
    ("New York", "Harbor Hall", "America/New_York", 888),
    ("Chicago", "Lakeside Theatre", "America/Chicago", 1025),
    ("Denver", "Red Mesa Arena", "America/Denver", 881),
    ("Los Angeles", "Palm Court Pavilion", "America/Los_Angeles", 950),
    ("Phoenix", "Desert Bloom Amphitheater", "America/Phoenix", 860),
    ("Seattle", "Sound Stage", "America/Los_Angeles", 1035),
    ("Austin", "Live Oak Hall", "America/Chicago", 825),
    ("Atlanta", "Peachtree Ballroom", "America/New_York", 890),
    ("Boston", "Commonwealth Music Hall", "America/New_York", 625),
    ("Montréal", "Salle Saint-Laurent", "America/Toronto", 1498),
    ("Honolulu", "Aloha Bowl", "Pacific/Honolulu", 450),
    ("Anchorage", "Northern Lights Center", "America/Anchorage", 0),
    ("Miami", "Bayfront Stage", "America/New_York", 700),
    ("Nashville", "Riverfront Opry", "America/Chicago", 925),
    ("Portland", "Rose City Hall", "America/Los_Angeles", 0),
)

TOUR_NAMES: tuple[str, ...] = (
    "Midnight Lanterns Tour",
    "Glass Harbor Live",
    "Northbound Strings",
    "The Velvet Static World Tour",
    "Saltwater Choir on the Road",
    "Paper Comets Reunion",
)

ORGANIZER_NAMES: tuple[str, ...] = (
    "Lantern Live Productions",
    "Harborline Presents",
    "Northbound Touring Co.",
    "Velvet Static LLC",
    "Saltwater Events",
    "Comet Street Promotions",
)

# (name, low price in cents, high price in cents, relative weight in orders)
TICKET_TYPES: tuple[tuple[str, int, int, int], ...] = (
    ("General Admission", 4500, 8000, 60),
    ("VIP", 15000, 30000, 10),
    ("Early Bird", 3000, 4500, 15),
    ("Balcony", 5500, 7000, 12),
    ("Student", 2500, 3500, 8),
    ("Meet & Greet", 25000, 40000, 3),
)

FIRST_NAMES: tuple[str, ...] = (
    "Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Ethan",
    "Zoe", "Aarav", "Chloé", "Diego", "Hana", "Isaac", "Jade", "Kai", "Leila", "Marcus",
    "Nora", "Omar", "Priya", "Quinn", "Rosa", "Samir", "Tariq", "Uma", "Valentina", "Wei",
    "Ximena", "Yusuf", "Zara", "Björn", "Amara", "Chen", "Dmitri", "Elif", "Farah", "Grace",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Garcia", "Nguyen", "Patel", "Kim", "Okafor", "Müller", "Rossi", "Silva",
    "Cohen", "O'Brien", "Haddad", "Kowalski", "Tanaka", "Andersen", "Dubois", "Moreno", "Singh", "Wright",
    "Lopez", "Ivanova", "Mensah", "Fischer", "Brooks", "Santos", "Yamamoto", "Reyes", "Walsh", "Hughes",
)  # fmt: skip

REFUND_REMARKS: tuple[str, ...] = (
    "Requested by customer",
    "Duplicate purchase",
    "Cannot attend",
    "Event date conflict",
    "Fraud suspected",
)

# (PurchaseFrom, weight); the odd spellings are real-world export noise the ingest must normalize.
PURCHASE_SOURCES: tuple[tuple[str, int], ...] = (
    ("online", 720),
    ("boxOffice", 200),
    ("BoxOffice", 10),
    ("partner", 40),
    ("kiosk", 30),
)

ONLINE_PAYMENT_METHODS: tuple[tuple[str, int], ...] = (
    ("card", 80),
    ("apple_pay", 10),
    ("google_pay", 7),
    ("link", 3),
)

BANK_NAMES: tuple[str, ...] = (
    "STRIPE TEST BANK",
    "WELLS FARGO BANK",
    "CHASE",
    "BANK OF AMERICA",
    "CITIBANK",
)
