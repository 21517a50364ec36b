"""Word lists the demo data is drawn from."""

from __future__ import annotations

FIRST_NAMES = (  # noqa: SIM905 - a word list reads best as words
    "Anna Emma Sophie Julia Lotte Sanne Eva Lisa Fleur Noor Mila Sara Laura Marie Clara Lea "
    "Hannah Chloe Olivia Amelia Isla Grace Lucia Giulia Elena Ines Camille Manon "
    "Daan Sem Lucas Levi Finn Milan Thomas Jan Pieter Bram Luuk Jesse Max Paul Felix Leon Noah "
    "Jonas Louis Hugo Arthur Oliver George Harry Jack Marco Luca Pablo Mateo Liam Ethan"
).split()
LAST_NAMES = (  # noqa: SIM905
    "de Vries|Jansen|de Jong|Bakker|Visser|Smit|Meijer|Mulder|de Boer|Bos|Vos|Peters|Hendriks|"
    "Dekker|Brouwer|Müller|Schmidt|Schneider|Fischer|Weber|Wagner|Becker|Hoffmann|Martin|Bernard|"
    "Dubois|Laurent|Lefebvre|Moreau|Smith|Jones|Taylor|Brown|Williams|Wilson|Johnson|Davies|Evans|"
    "Rossi|Russo|Ferrari|Garcia|Martinez|Lopez|Sanchez|Peeters|Maes|Claes|Janssens|Miller|Davis"
).split("|")
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "post.example")

# country: (weight, cities, phone prefix, digits after the prefix, locale)
COUNTRIES = {
    "NL": (
        40,
        ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen"),
        "+316",
        8,
        "nl-NL",
    ),
    "BE": (10, ("Antwerpen", "Gent", "Brussel", "Leuven", "Brugge"), "+3247", 7, "nl-BE"),
    "DE": (20, ("Berlin", "Hamburg", "München", "Köln", "Düsseldorf"), "+49151", 8, "de-DE"),
    "FR": (10, ("Paris", "Lyon", "Marseille", "Lille", "Bordeaux"), "+336", 8, "fr-FR"),
    "GB": (10, ("London", "Manchester", "Bristol", "Leeds", "Edinburgh"), "+4477", 8, "en-GB"),
    "US": (10, ("New York", "San Francisco", "Chicago", "Austin", "Boston"), "+1212", 7, "en-US"),
}
PLANS = (("free", 55), ("basic", 25), ("plus", 15), ("business", 5))
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
DEVICE_TYPES = (("desktop", 45), ("mobile", 45), ("tablet", 8), ("tv", 2))
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
)

# sku, name, category, price
PRODUCTS = (
    ("JKT-001", "Rain jacket", "Jackets", 129.00),
    ("JKT-002", "Down jacket", "Jackets", 219.00),
    ("SHO-010", "Trail runner", "Shoes", 139.95),
    ("SHO-011", "City sneaker", "Shoes", 89.95),
    ("BAG-020", "Daypack 20L", "Bags", 79.00),
    ("BAG-021", "Weekender", "Bags", 149.00),
    ("ACC-030", "Merino beanie", "Accessories", 29.95),
    ("ACC-031", "Water bottle", "Accessories", 19.95),
    ("TEE-040", "Organic t-shirt", "Shirts", 34.95),
    ("TEE-041", "Long sleeve", "Shirts", 44.95),
    ("TNT-050", "2-person tent", "Camping", 299.00),
    ("SLP-051", "Sleeping bag", "Camping", 179.00),
)
PAGES = (
    ("Home", "/"),
    ("Jackets", "/jackets"),
    ("Shoes", "/shoes"),
    ("Bags", "/bags"),
    ("Camping", "/camping"),
    ("Sale", "/sale"),
    ("Blog", "/blog/packing-list"),
    ("Stores", "/stores"),
)
CAMPAIGNS = ("spring_sale", "newsletter_week", "retargeting", "brand_search", "")

INDUSTRIES = (
    "Retail",
    "Software",
    "Travel",
    "Manufacturing",
    "Finance",
    "Healthcare",
    "Education",
    "Logistics",
    "Media",
    "Hospitality",
)
COMPANY_WORDS = (
    "North",
    "Blue",
    "Green",
    "Peak",
    "Harbor",
    "River",
    "Summit",
    "Bright",
    "Delta",
    "Nova",
    "Orbit",
    "Pioneer",
    "Stone",
    "Urban",
    "Vista",
    "Atlas",
    "Cedar",
    "Echo",
    "Iron",
    "Maple",
)
COMPANY_SUFFIXES = (
    "Labs",
    "Group",
    "Retail",
    "Systems",
    "Outdoor",
    "Logistics",
    "Media",
    "BV",
    "GmbH",
)
JOB_TITLES = (
    "Marketing manager",
    "Head of e-commerce",
    "CMO",
    "Buyer",
    "Store manager",
    "CEO",
    "Data analyst",
    "Procurement lead",
    "Operations manager",
    "Founder",
)
TAGS = ("VIP", "Newsletter", "Wholesale", "Partner", "Event 2026", "Churn risk")

PIPELINES = {
    "New business": (
        ("Qualification", 10, False, False),
        ("Meeting scheduled", 25, False, False),
        ("Proposal sent", 50, False, False),
        ("Negotiation", 75, False, False),
        ("Won", 100, True, False),
        ("Lost", 0, False, True),
    ),
    "Renewals": (
        ("Up for renewal", 60, False, False),
        ("Quote sent", 80, False, False),
        ("Renewed", 100, True, False),
        ("Churned", 0, False, True),
    ),
}
TICKET_SUBJECTS = (
    "Where is my order?",
    "Return request",
    "Wrong size delivered",
    "Invoice needed",
    "Discount code not working",
    "Account locked",
    "Change delivery address",
    "Warranty claim",
)

PURPOSES = (
    # code, name, lawful basis, is marketing, express written
    ("email_marketing", "E-mail marketing", "consent", True, False),
    ("sms_marketing", "SMS marketing", "consent", True, True),
    ("phone", "Phone calls", "consent", True, True),
    ("personalisation", "Personalisation", "consent", False, False),
    ("advertising", "Advertising", "consent", True, False),
    ("analytics", "Analytics", "consent", False, False),
    ("third_party_sharing", "Sharing with third parties", "consent", True, False),
)
# How likely a person grants each purpose when asked.
GRANT_RATES = {
    "email_marketing": 0.65,
    "sms_marketing": 0.30,
    "phone": 0.20,
    "personalisation": 0.55,
    "advertising": 0.45,
    "analytics": 0.75,
    "third_party_sharing": 0.15,
}

PROVIDERS = (
    # name, party, retention days
    ("Demo first-party web", "first", 90),
    ("Demo retail co-op", "second", 60),
    ("Demo DataCo", "third", 30),
    ("Demo Intent Signals", "third", 14),
)

# An IAB-Audience-Taxonomy-like tree: (code, name, kind, parent code); tier follows the depth.
TAXONOMY = (
    ("DEM", "Demographic", "demographic", None),
    ("DEM-AGE", "Age range", "demographic", "DEM"),
    ("DEM-AGE-18-24", "18-24", "demographic", "DEM-AGE"),
    ("DEM-AGE-25-34", "25-34", "demographic", "DEM-AGE"),
    ("DEM-AGE-35-44", "35-44", "demographic", "DEM-AGE"),
    ("DEM-AGE-45-54", "45-54", "demographic", "DEM-AGE"),
    ("DEM-AGE-55-PLUS", "55+", "demographic", "DEM-AGE"),
    ("DEM-GEN", "Gender", "demographic", "DEM"),
    ("DEM-GEN-F", "Female", "demographic", "DEM-GEN"),
    ("DEM-GEN-M", "Male", "demographic", "DEM-GEN"),
    ("DEM-HHI", "Household income", "demographic", "DEM"),
    ("DEM-HHI-LOW", "Lower income", "demographic", "DEM-HHI"),
    ("DEM-HHI-MID", "Middle income", "demographic", "DEM-HHI"),
    ("DEM-HHI-HIGH", "Higher income", "demographic", "DEM-HHI"),
    ("DEM-PAR", "Parents", "demographic", "DEM"),
    ("INT", "Interest", "interest", None),
    ("INT-OUT", "Outdoor & sports", "interest", "INT"),
    ("INT-OUT-HIKE", "Hiking", "interest", "INT-OUT"),
    ("INT-OUT-RUN", "Running", "interest", "INT-OUT"),
    ("INT-OUT-CAMP", "Camping", "interest", "INT-OUT"),
    ("INT-OUT-CYC", "Cycling", "interest", "INT-OUT"),
    ("INT-TRV", "Travel", "interest", "INT"),
    ("INT-TRV-CITY", "City trips", "interest", "INT-TRV"),
    ("INT-TRV-ADV", "Adventure travel", "interest", "INT-TRV"),
    ("INT-FSH", "Fashion", "interest", "INT"),
    ("INT-FSH-SUST", "Sustainable fashion", "interest", "INT-FSH"),
    ("INT-TEC", "Technology", "interest", "INT"),
    ("INT-TEC-GAD", "Gadgets", "interest", "INT-TEC"),
    ("INT-FOOD", "Food & drink", "interest", "INT"),
    ("INT-FOOD-VEG", "Vegetarian cooking", "interest", "INT-FOOD"),
    ("PI", "Purchase intent", "purchase_intent", None),
    ("PI-APP", "Apparel", "purchase_intent", "PI"),
    ("PI-APP-OUTER", "Outerwear", "purchase_intent", "PI-APP"),
    ("PI-APP-SHOE", "Footwear", "purchase_intent", "PI-APP"),
    ("PI-OUT", "Outdoor equipment", "purchase_intent", "PI"),
    ("PI-OUT-TENT", "Tents", "purchase_intent", "PI-OUT"),
    ("PI-OUT-BAG", "Backpacks", "purchase_intent", "PI-OUT"),
    ("PI-TRV", "Travel", "purchase_intent", "PI"),
    ("PI-TRV-FLT", "Flights", "purchase_intent", "PI-TRV"),
    ("PI-TRV-HTL", "Hotels", "purchase_intent", "PI-TRV"),
    ("PI-ELEC", "Consumer electronics", "purchase_intent", "PI"),
    ("PI-ELEC-PHONE", "Smartphones", "purchase_intent", "PI-ELEC"),
)
# Categories a shopper of a product category tends to show up in.
PRODUCT_CATEGORY_AFFINITY = {
    "Jackets": ("INT-OUT-HIKE", "PI-APP-OUTER"),
    "Shoes": ("INT-OUT-RUN", "PI-APP-SHOE"),
    "Bags": ("INT-TRV-ADV", "PI-OUT-BAG"),
    "Camping": ("INT-OUT-CAMP", "PI-OUT-TENT"),
    "Accessories": ("INT-OUT-HIKE",),
    "Shirts": ("INT-FSH-SUST",),
}
