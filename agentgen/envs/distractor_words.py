"""Distractor vocabularies, sized as in the study (papers.md A section 6) where it gives sizes.

Every list is chosen so that a distractor cannot be mistaken for something the agent can act on:
- Sokoban: no word of the rendering's objects (wall, box, target, player, floor) nor of the actions
  (up, down, left, right);
- ALFWorld: kinds may be real ALFWorld kinds (bowl, cup, ...); the augmenter then gives the distractor
  an id no real object of that kind has ("a fresh id", as the study);
- ScienceWorld: no word of ScienceWorld's object types (scienceworld/object_type_ids.tsv: cups, pots,
  books, paints, answer boxes, ...) and no colours (paints and answer boxes are named by colour); the
  augmenter also drops any candidate sharing a word with the objects listed in the observation;
- WebShop: ads, trivial features and decoy titles are generic shop text; the augmenter checks decoys
  against the catalog's titles and the page's clickables.
"""

from __future__ import annotations

# fmt: off
# ---------------------------------------------------------------- Sokoban: 7 objects x 5 location phrases
SOKOBAN_OBJECTS = (
    "lantern",
    "potted fern",
    "wooden stool",
    "rusty bucket",
    "coiled rope",
    "broken clock",
    "empty bottle",
)
SOKOBAN_PLACES = (
    "past the room's edge",
    "sealed off",
    "in a closed alcove",
    "out of bounds",
    "beyond the border",
)
# Words a Sokoban distractor must never contain (the rendering's objects and the actions).
SOKOBAN_RESERVED = ("wall", "box", "target", "player", "floor", "up", "down", "left", "right")

# ---------------------------------------------------------------- ALFWorld: 28 kinds x 19 descriptors
ALFWORLD_KINDS = (
    "bowl", "cup", "lid", "jar", "tray", "basket", "bucket", "candle", "coaster", "comb",
    "glove", "hanger", "kettle", "ladle", "magnet", "napkin", "notebook", "pitcher", "plate", "ruler",
    "trivet", "sponge", "stapler", "teapot", "thermos", "toothbrush", "whisk", "funnel",
)
ALFWORLD_DESCRIPTORS = (
    "cracked", "dirty", "dusty", "chipped", "faded", "scratched", "sticky", "worn", "old", "tiny",
    "bent", "stained", "wet", "shiny", "rusty", "broken", "empty", "plain", "ordinary",
)

# ---------------------------------------------------------------- ScienceWorld (our own design)
SCIWORLD_KINDS = (
    "wall clock", "umbrella", "coat hook", "wind chime", "candlestick", "vase", "kite", "globe",
    "hourglass", "snow globe", "postcard", "lantern", "rug", "curtain", "mirror", "calendar",
    "doormat", "trophy", "metronome", "ceiling fan", "coat rack", "birdcage", "piggy bank", "yo-yo",
)
SCIWORLD_DESCRIPTORS = (
    "dusty", "faded", "tiny", "lopsided", "chipped", "tarnished", "crooked", "sun-bleached",
    "cracked", "scuffed", "old-fashioned", "ornate", "plain", "peeling", "dented", "wobbly",
)

# ---------------------------------------------------------------- WebShop: ads 20 x 20, 14 trivial features
WEBSHOP_AD_DESCRIPTORS = (
    "Limited-time deals", "Top-rated picks", "Free shipping offers", "New arrivals", "Flash sale prices",
    "Bestselling brands", "Members-only savings", "Seasonal favorites", "Clearance markdowns", "Trending now",
    "Editor's choice", "Bundle and save", "Weekend specials", "Exclusive coupons", "Daily discounts",
    "Fan favorites", "Holiday gift ideas", "Price drops", "Staff picks", "Just restocked",
)
WEBSHOP_AD_CATEGORIES = (
    "home decor", "kitchen gadgets", "garden tools", "pet supplies", "office supplies", "camping gear",
    "board games", "car accessories", "party supplies", "craft kits", "bedding", "luggage",
    "fitness equipment", "phone cases", "baby gear", "bathroom storage", "wall art", "musical instruments",
    "school supplies", "cleaning supplies",
)
WEBSHOP_TRIVIAL_FEATURES = (
    "Ships in recyclable packaging",
    "Gift receipt available at checkout",
    "Customer photos available",
    "Seller usually responds within 24 hours",
    "Frequently viewed by other shoppers",
    "Listed on this store since 2019",
    "Ships from a domestic warehouse",
    "Tracking number provided after dispatch",
    "Secure checkout",
    "Questions about this item are answered by the seller",
    "Viewed over 1,000 times this week",
    "Packaging may vary from the image shown",
    "Delivery dates are estimates",
    "Sold by an independent seller",
)
# Decoy result titles: "<quality> <material> <thing> for <use>" (5 x 6 x 8 x 6 = 1,440 titles).
WEBSHOP_DECOY_QUALITIES = ("Deluxe", "Classic", "Premium", "Everyday", "Compact")
WEBSHOP_DECOY_MATERIALS = ("Bamboo", "Canvas", "Walnut", "Enamel", "Wicker", "Terracotta")
WEBSHOP_DECOY_THINGS = (
    "Storage Organizer", "Display Stand", "Keepsake Tin", "Desk Tidy", "Wall Shelf", "Serving Caddy",
    "Gift Hamper", "Magazine Rack",
)
WEBSHOP_DECOY_USES = ("Everyday Use", "Small Spaces", "Gifting", "Hobby Rooms", "Entryways", "Collectors")
WEBSHOP_DECOY_MARK = "Unavailable listing (unsuitable: cannot be selected)"

# fmt: on


def with_article(phrase: str) -> str:
    """ "a lantern", "an empty bottle"."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase
