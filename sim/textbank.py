"""English template banks for synthetic conversations (the "support" domain).

Each :class:`Slot` is one kind of fact a user can have: its category and
importance, the values it takes, how a user states it (several paraphrases),
how a memory system would phrase it, and how a user asks about it later. Text is
real English so that token counts and real embeddings mean something.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Slot:
    """One kind of user fact, with its templates. ``{v}`` stands for the value."""

    key: str
    category: str  # preference | background | goal | other
    importance: int  # 1-10, as an extractor would rate it
    mutable: bool
    values: tuple[str, ...]
    statements: tuple[str, ...]
    updates: tuple[str, ...]
    memories: tuple[str, ...]  # memories[0] is the canonical phrasing
    probes: tuple[str, ...]


SLOTS: tuple[Slot, ...] = (
    Slot(
        "name",
        "background",
        6,
        False,
        (
            "Priya",
            "Marco",
            "Aiko",
            "Daniel",
            "Fatima",
            "Lukas",
            "Sofia",
            "Chen",
            "Amara",
            "Diego",
            "Hannah",
            "Omar",
            "Ingrid",
            "Tomasz",
            "Leila",
            "Kwame",
        ),
        (
            "Hi, my name is {v}.",
            "This is {v} here.",
            "You can call me {v}.",
            "Hello again, it's {v}.",
        ),
        (),
        ("User's name is {v}.", "The user is called {v}.", "User goes by {v}."),
        ("Do you remember my name?", "What name do you have on file for me?"),
    ),
    Slot(
        "city",
        "background",
        7,
        True,
        (
            "Berlin",
            "Lisbon",
            "Toronto",
            "Osaka",
            "Austin",
            "Nairobi",
            "Melbourne",
            "Warsaw",
            "Dublin",
            "Seoul",
            "Lyon",
            "Denver",
            "Manila",
            "Porto",
        ),
        (
            "I live in {v}.",
            "I'm based in {v}.",
            "My home is in {v}.",
            "I'm writing from {v}, where I live.",
        ),
        (
            "I just moved to {v}.",
            "Quick update: I relocated to {v} last week.",
            "I'm now living in {v}.",
        ),
        ("User lives in {v}.", "The user is based in {v}.", "User's home city is {v}."),
        (
            "Which city do you have me in for delivery estimates?",
            "Can you check the delivery time to where I live?",
        ),
    ),
    Slot(
        "plan",
        "background",
        8,
        True,
        ("Free", "Starter", "Pro", "Business", "Enterprise"),
        ("I'm on the {v} plan.", "We pay for the {v} plan.", "Our account is on {v}."),
        ("I upgraded to the {v} plan yesterday.", "We switched our account to the {v} plan."),
        (
            "User is on the {v} plan.",
            "The user's subscription is the {v} plan.",
            "User subscribes to the {v} plan.",
        ),
        ("What plan am I on right now?", "Does my current plan include priority support?"),
    ),
    Slot(
        "device",
        "background",
        5,
        True,
        (
            "iPhone 15",
            "Pixel 8",
            "Galaxy S24",
            "ThinkPad X1",
            "MacBook Air",
            "iPad Pro",
            "Surface Laptop",
            "OnePlus 12",
        ),
        ("I use the app on my {v}.", "I'm on a {v}.", "My device is a {v}."),
        ("I got a new {v} and use the app there now.", "I switched to a {v}."),
        ("User uses a {v}.", "The user's device is a {v}.", "User runs the app on a {v}."),
        (
            "Is the latest update compatible with my device?",
            "Will the new feature work on the device I use?",
        ),
    ),
    Slot(
        "language",
        "preference",
        6,
        False,
        ("English", "Spanish", "German", "French", "Japanese", "Portuguese", "Polish"),
        (
            "Please answer in {v} if you can.",
            "I'd rather read replies in {v}.",
            "{v} is my preferred language.",
        ),
        (),
        (
            "User prefers replies in {v}.",
            "The user wants answers in {v}.",
            "User's preferred language is {v}.",
        ),
        ("Which language did I ask you to use?",),
    ),
    Slot(
        "contact",
        "preference",
        6,
        True,
        ("email", "text message", "a phone call", "in-app chat"),
        (
            "Please contact me by {v}.",
            "The best way to reach me is {v}.",
            "I prefer to hear back by {v}.",
        ),
        ("Actually, reach me by {v} from now on.",),
        (
            "User prefers to be contacted by {v}.",
            "The user wants updates by {v}.",
            "Best channel for the user is {v}.",
        ),
        ("How will you let me know when the ticket is resolved?",),
    ),
    Slot(
        "company",
        "background",
        7,
        True,
        (
            "Acme Logistics",
            "Northwind Traders",
            "Globex",
            "Initech",
            "Umbrella Health",
            "Stark Farms",
            "Wayne Media",
            "Hooli",
            "Vandelay Imports",
            "Soylent Foods",
        ),
        ("I work at {v}.", "I'm with {v}.", "Our company is {v}.", "I handle the account for {v}."),
        ("I changed jobs and now work at {v}.",),
        ("User works at {v}.", "The user's company is {v}.", "User is employed by {v}."),
        ("Can you put my company name on the invoice?", "Which company is my account under?"),
    ),
    Slot(
        "role",
        "background",
        5,
        True,
        (
            "accountant",
            "nurse",
            "software engineer",
            "teacher",
            "store manager",
            "office manager",
            "designer",
            "sales lead",
        ),
        ("I'm a {v} by trade.", "I work as a {v}.", "My job is {v}."),
        ("I was promoted and I'm now a {v}.",),
        ("User works as a {v}.", "The user is a {v}.", "User's job is {v}."),
        ("Which features would help someone in my job?",),
    ),
    Slot(
        "goal",
        "goal",
        8,
        True,
        (
            "cut our monthly bill",
            "migrate our data from the old system",
            "set up single sign-on for my team",
            "get a refund for last month",
            "add five more seats",
            "export all my invoices",
            "automate our weekly reports",
        ),
        ("I'm trying to {v}.", "My main goal is to {v}.", "What I need is to {v}."),
        ("New priority: I need to {v}.",),
        ("User's goal is to {v}.", "The user wants to {v}.", "User is trying to {v}."),
        ("Where were we on what I was trying to do?", "Any progress on my main request?"),
    ),
    Slot(
        "payment",
        "background",
        6,
        True,
        ("a Visa card", "PayPal", "bank transfer", "a Mastercard", "Apple Pay"),
        ("I pay with {v}.", "We're billed through {v}.", "My payment method is {v}."),
        ("Please charge {v} from now on.", "I switched my payment method to {v}."),
        ("User pays with {v}.", "The user's payment method is {v}.", "User is billed through {v}."),
        ("Which payment method will you charge for the renewal?",),
    ),
    Slot(
        "team_size",
        "background",
        5,
        True,
        ("5", "12", "25", "40", "150"),
        ("Our team has {v} people.", "There are {v} of us on the account.", "We're a team of {v}."),
        ("We grew to {v} people.", "Our team is now {v} people."),
        (
            "User's team has {v} people.",
            "The user's team size is {v}.",
            "User has {v} people on the account.",
        ),
        ("How many seats would I need for my whole team?",),
    ),
    Slot(
        "order",
        "other",
        7,
        True,
        ("A-48213", "B-11907", "C-30562", "D-77410", "E-52398", "F-60931"),
        ("My order number is {v}.", "It's about order {v}.", "The order in question is {v}."),
        ("I placed a new order, {v}.",),
        (
            "User's open order number is {v}.",
            "The user's order is {v}.",
            "User is waiting on order {v}.",
        ),
        ("Any news on my order?", "When will my order arrive?"),
    ),
    Slot(
        "display",
        "preference",
        4,
        True,
        ("dark mode", "large text", "a compact layout", "high contrast"),
        ("I prefer {v} in the app.", "I always use {v}.", "Please keep {v} on for me."),
        ("I switched to {v}.",),
        ("User prefers {v}.", "The user likes {v} in the app.", "User's display setting: {v}."),
        ("Can you set the app up the way I like it?",),
    ),
    Slot(
        "timezone",
        "preference",
        5,
        True,
        ("9 to 5 on weekdays", "early mornings", "evenings after 6", "weekends only"),
        ("I'm usually available {v}.", "Reach me {v}, please.", "My free time is {v}."),
        ("My schedule changed; I'm available {v} now.",),
        ("User is available {v}.", "The user can be reached {v}.", "User's availability: {v}."),
        ("When is a good time to schedule the call with me?",),
    ),
)

SLOT_BY_KEY = {slot.key: slot for slot in SLOTS}

QUESTIONS: tuple[str, ...] = (
    "How do I reset my password?",
    "The app keeps logging me out, any idea why?",
    "Can you explain the charges on my last invoice?",
    "Where can I download my receipts?",
    "Is there an outage right now?",
    "How do I change my notification settings?",
    "Can I get a copy of my contract?",
    "Why did my payment fail this morning?",
    "How do I add a teammate to the workspace?",
    "The export button is greyed out. What am I missing?",
    "Can you walk me through setting up two-factor authentication?",
    "My dashboard shows no data since yesterday.",
    "How long does a refund usually take?",
    "Is there a discount for annual billing?",
    "The mobile app crashes when I open settings.",
    "Can I change the email address on the account?",
    "How do I cancel an order?",
    "What does the error code 504 mean?",
    "Is my data backed up automatically?",
    "Can I schedule a call with someone from billing?",
    "How do I connect the calendar integration?",
    "The search results look out of date.",
    "Can you remove an old user from our account?",
    "Where do I find the API keys?",
)

FILLERS: tuple[str, ...] = (
    "Thanks, that worked!",
    "Okay, let me try that.",
    "Great, thank you for the quick help.",
    "Hmm, that didn't fix it.",
    "Got it.",
    "Could you explain that step again?",
    "Perfect, that's all for now.",
    "One more thing before I go.",
)

INFERENCES: tuple[str, ...] = (
    "User is probably a small business owner.",
    "User seems to be frustrated with billing.",
    "User is likely not very technical.",
    "User may be planning to cancel.",
    "User probably works remotely.",
    "User seems to travel often.",
    "User is likely evaluating competitors.",
    "User probably manages the team's budget.",
)

REPLY_SENTENCES: tuple[str, ...] = (
    "Thanks for reaching out.",
    "I can help with that.",
    "Let me look into it for you.",
    "Here is what I found on your account.",
    "First, open the Settings page from the menu in the top right corner.",
    "Then select the Security tab and follow the prompts.",
    "This usually takes a minute or two to take effect.",
    "If the problem continues, try signing out and back in again.",
    "I have checked the recent activity and everything looks normal.",
    "Your last invoice includes the monthly subscription and two extra seats.",
    "Refunds are processed within five to seven business days.",
    "You can download every receipt from the Billing section as a PDF.",
    "There is no known outage at the moment.",
    "I have passed this on to our engineering team.",
    "You will get an update as soon as we hear back.",
    "Two-factor authentication adds a one-time code to each sign-in.",
    "The export needs admin rights, so ask an owner on your account to enable it.",
    "Our annual plans come with a discount compared to monthly billing.",
    "Is there anything else I can help you with today?",
    "Please let me know if that works for you.",
    "I'm sorry for the trouble this has caused.",
    "That feature is available on every paid plan.",
)

SYSTEM_PROMPT = (
    "You are Ava, the customer support assistant for a software company. "
    "Answer clearly and briefly, in the customer's preferred language. "
    "Use what you know about the customer to personalise your answer, but never invent "
    "account details. If you cannot solve a problem, explain the next step and offer to "
    "open a ticket. Be polite, avoid jargon, and do not share internal information. "
    "Billing questions about refunds, invoices and plan changes are in scope; legal and "
    "security incidents must be escalated to a human agent."
)

MEMORY_HEADER = "Known facts about this customer (from earlier conversations):\n"

EXTRACT_SYSTEM_PROMPT = (
    "You extract durable facts about the user from a conversation between the user and a "
    "support assistant. Return only facts the user stated about themselves: identity, "
    "location, account, plan, devices, preferences, goals and open requests. Ignore "
    "greetings, questions and anything the assistant said. Write each fact as one short "
    "sentence in the third person, starting with 'User'. Rate its importance from 1 (trivia) "
    "to 10 (needed to serve the user) and give its category: preference, background, goal "
    "or other. Answer with a JSON array of objects with the keys content, importance and "
    "category, and nothing else. If there is nothing to extract, answer with []."
)

SUMMARY_SYSTEM_PROMPT = (
    "Summarize the conversation so far for a support assistant that will continue it. "
    "Keep every durable fact about the user (identity, account, preferences, goals and "
    "open requests) and the state of each open issue. Drop small talk. Write short "
    "sentences, most recent information first, and replace facts that the user has "
    "updated with their new value."
)
