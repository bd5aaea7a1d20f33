"""``langmem-like``: LangMem 0.0.30's memory store manager behind its reflection executor.

It is long because it holds LangMem's and trustcall's prompt texts and tool
definitions verbatim, so that a call is billed by the library's own words.

A pure-Python model of what an application built on LangMem does (sources are
files of the ``langmem`` 0.0.30 and ``trustcall`` 0.0.39 packages):

1. **Debounced background reflection** (``langmem/reflection.py``,
   ``LocalReflectionExecutor``). After each reply the application submits the
   thread's messages with ``after_seconds = delay_s``; a submission for a thread
   (a session here) that still has one pending cancels it (``submit``:
   ``existing.cancel_event.set()``), so a burst of messages ends in one reflection,
   ``delay_s`` after its last reply, covering every message since the last
   reflection ran. Due reflections start on the engine's tick (every ``poll_s``)
   and run on a background worker.
2. **The search before extraction** (``MemoryStoreManager.invoke``, no
   ``query_model``): one query per window of ``get_dialated_windows(messages,
   query_limit // 4)`` (the last 1, 2, 4… messages, as LangChain's ``pretty_repr``
   writes them), which at the default ``query_limit = 5`` is one query: the last
   message of the payload (the assistant's reply); under 4, none. The synchronous
   path the executor uses runs each query twice (once with the store's default
   limit, its result unused, then with ``limit=query_limit``): two embedding calls
   and two store queries a window. The ``query_limit`` best hits are the existing
   memories the model sees.
3. **One extraction call with tools** (``MemoryManager.invoke``, ``max_steps = 1``;
   trustcall's ``create_extractor``). With no existing memory the model gets the
   ``Memory`` tool; with some, trustcall's ``_ExtractUpdates`` appends them to the
   system message (``<instance id=… schema_type="Memory">`` per memory) and offers
   ``PatchDoc`` and ``Memory`` (and ``RemoveDoc`` when ``enable_deletes``). The call
   is billed as LangMem's request: its system message, its user message (the
   instructions, then the conversation inside ``<session_…>`` tags) and the tool
   definitions counted by the OpenAI cookbook's rule (:func:`function_tokens`).
   Valid tool calls end trustcall's graph: one LLM call per reflection.
4. **Tool calls applied** (``MemoryStoreManager._apply_manager_output``): one
   insert (a ``Memory`` call) per new fact, one patch (``PatchDoc``) per fact that
   updates a memory the model was shown, and, with ``enable_deletes``, one removal
   (``RemoveDoc``) per other outdated copy shown. Each put is one embedding call and
   one store write, as LangGraph's store embeds every put.
5. **The search tool at answer time** (``create_search_memory_tool``): the user's
   message is the query, its ``search_limit`` best hits are injected.

Dedup is the model's alone: neither ``MemoryStoreManager`` nor the store hashes
or compares what it writes, so a restated fact is dropped only when its memory
is among the ``query_limit`` the search showed the model.

The mock LLM is the model: facts come from ``ctx.llm.extract`` (with the
scenario's miss, reword and hallucination rates), and the tool calls are what
that fact calls for against the memories shown, decided from the hidden ground
truth without error, by the rule of the mock's Mem0 update call: a memory of the
same slot at the same or a newer version means the fact is known; an older one is
patched (the first shown); none is an insert. The call's output tokens are
the mock extractor's answer (the facts as a JSON array), not the tool calls' text.
"""

from __future__ import annotations

import dataclasses
import heapq
import uuid
from typing import Annotated

import numpy as np
from pydantic import Field

from strategies.api import (
    Factoid,
    Memory,
    MemoryLayoutConfig,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    TickContext,
    TokenCounter,
    TurnContext,
    hit_all,
    normalized_hash,
    query_vector,
    register,
)

# -- LangMem's and trustcall's texts, verbatim ---------------------------------------------
MEMORY_SUBROUTINE = "You are a memory subroutine for an AI."
"""The system message of ``MemoryManager._prepare_messages``."""
MEMORY_INSTRUCTIONS = (
    "You are a long-term memory manager maintaining a core store of semantic, procedural, "
    "and episodic memory. These memories power a life-long learning agent's core predictive "
    "model.\n\n"
    "What should the agent learn from this interaction about the user, itself, or how it "
    "should act? Reflect on the input trajectory and current memories (if any).\n\n"
    "1. **Extract & Contextualize**  \n"
    "   - Identify essential facts, relationships, preferences, reasoning procedures, and "
    "context\n"
    "   - Caveat uncertain or suppositional information with confidence levels (p(x)) and "
    "reasoning\n"
    "   - Quote supporting information when necessary\n\n"
    "2. **Compare & Update**  \n"
    "   - Attend to novel information that deviates from existing memories and expectations.\n"
    "   - Consolidate and compress redundant memories to maintain information-density; "
    "strengthen based on reliability and recency; maximize SNR by avoiding idle words.\n"
    "   - Remove incorrect or redundant memories while maintaining internal consistency\n\n"
    "3. **Synthesize & Reason**  \n"
    '   - What can you conclude about the user, agent ("I"), or environment using '
    "deduction, induction, and abduction?\n"
    "   - What patterns, relationships, and principles emerge about optimal responses?\n"
    "   - What generalizations can you make?\n"
    "   - Qualify conclusions with probabilistic confidence and justification\n\n"
    "As the agent, record memory content exactly as you'd want to recall it when predicting "
    "how to act or respond. \n"
    "Prioritize retention of surprising (pattern deviation) and persistent (frequently "
    "reinforced) information, ensuring nothing worth remembering is forgotten and nothing "
    "false is remembered. Prefer dense, complete memories over overlapping ones."
)
"""``langmem.knowledge.extraction._MEMORY_INSTRUCTIONS``."""
USER_REQUEST = (
    "\n\nEnrich, prune, and organize memories based on any new information. If an existing "
    "memory is incorrect or outdated, update it based on the new information. All operations "
    "must be done in single parallel multi-tool call. Avoid duplicate extractions."
)
"""What ``_prepare_messages`` writes after the instructions, up to the session (whose
opening, `` \\n\\n<session_…>``, starts with the space this sentence is followed by)."""
PATCH_COMMAND = "Generate JSONPatches to update the existing schema instances."
INSERT_COMMAND = (
    " If you need to extract or insert *new* instances of the schemas, call the relevant"
    " function(s)."
)
"""trustcall ``_ExtractUpdates._setup``: the command before ``<existing>``; the second
sentence only when inserts are enabled."""
NAMESPACE = "memories"
"""First element of ``create_memory_store_manager``'s default namespace
``("memories", "{langgraph_user_id}")``."""

# -- the tool definitions, as the cookbook's rule reads them -------------------------------
# (name, description, {property: (type, description)}): what ``bind_tools`` sends for
# trustcall's PatchDoc, langmem's Memory and trustcall's RemoveDoc, trimmed to the fields
# the rule counts (nested schemas, titles and ``required`` are not counted by it).
MEMORY_TOOL = (
    "Memory",
    "Call this tool once for each new memory you want to record. Use multi-tool calling to "
    "record multiple new memories.",
    {
        "content": (
            "string",
            "The memory as a well-written, standalone episode/fact/note/preference/etc. Refer "
            "to the user's instructions for more information the preferred memory "
            "organization.",
        )
    },
)
PATCH_DOC_TOOL = (
    "PatchDoc",
    "Respond with JSONPatch operations to update the existing JSON document based on the "
    "provided text and schema.",
    {
        "json_doc_id": (
            "string",
            "First, identify the json_doc_id of the document you are patching.",
        ),
        "planned_edits": (
            "string",
            "Seconds, think step-by-step, reasoning over each required update and the "
            "corresponding JSONPatch operation to accomplish it. Cite the fields in the "
            "JSONSchema you referenced in developing this plan. Address each path as a group; "
            "don't switch between paths.\n Plan your patches in the following order:1. "
            "replace - this keeps collection size the same.\n2. remove - BE CAREFUL ABOUT "
            "ORDER OF OPERATIONS. Each operation is applied sequentially. For arrays, remove "
            "the highest indexed value first to avoid shifting indices. This ensures "
            "subsequent remove operations remain valid.\n 3. add (for arrays, use /- to "
            "efficiently append to end).",
        ),
        "patches": (
            "array",
            "Finally, provide a list of JSONPatch operations to be applied to the previous "
            "tool call's response arguments. If none are required, return an empty list. "
            "This field is REQUIRED. Multiple patches in the list are applied sequentially "
            "in the order provided, with each patch building upon the result of the previous "
            "one. Take care to respect array bounds. Order patches as follows:\n 1. replace - "
            "this keeps collection size the same\n 2. remove - BE CAREFUL about order of "
            "operations. For arrays, remove the highest indexed value first to avoid shifting "
            "indices.\n 3. add - for arrays, use /- to efficiently append to end.",
        ),
    },
)


def remove_doc_tool(doc_ids: list[str]) -> tuple[str, str, dict[str, tuple[str, str]]]:
    """The ``RemoveDoc`` tool trustcall offers for the shown documents, listing their ids."""
    allowed = tuple(sorted(doc_ids))
    return (
        "RemoveDoc",
        "Use this tool to remove (delete) a doc by its ID.",
        {"json_doc_id": ("string", f"ID of the document to remove. Must be one of: {allowed}")},
    )


# The OpenAI cookbook's constants for gpt-4o and gpt-4o-mini ("How to count tokens with
# tiktoken", section 7, ``num_tokens_for_tools``; gpt-3.5-turbo and gpt-4 take 10 for
# ``FUNC_INIT``).
FUNC_INIT, PROP_INIT, PROP_KEY, FUNC_END = 7, 3, 3, 12


def function_tokens(tokens: TokenCounter, tools: list[tuple]) -> int:
    """Input tokens of function definitions by the OpenAI cookbook's rule.

    Per function ``FUNC_INIT`` + the tokens of ``name:description`` (one trailing
    period dropped); if it has properties ``PROP_INIT``, then per property
    ``PROP_KEY`` + the tokens of ``name:type:description``; ``FUNC_END`` once for
    the list. None of these tools has an enum.
    """
    if not tools:
        return 0
    total = FUNC_END
    for name, description, properties in tools:
        total += FUNC_INIT + tokens.count(f"{name}:{description.removesuffix('.')}")
        if properties:
            total += PROP_INIT
            for key, (kind, text) in properties.items():
                total += PROP_KEY + tokens.count(f"{key}:{kind}:{text.removesuffix('.')}")
    return total


def message_title(role: str) -> str:
    """LangChain's ``get_msg_title_repr``: the title line ``pretty_repr`` opens a message with."""
    padded = " Human Message " if role == "user" else " Ai Message "
    sep = "=" * ((80 - len(padded)) // 2)
    return sep + padded + sep + ("=" if len(padded) % 2 else "")


class LangMemLikeConfig(MemoryLayoutConfig):
    """The executor's delay, the searches' limits and the tools offered (sources: the docs)."""

    delay_s: Annotated[float, Field(ge=0)] = 1_800.0
    """Seconds a submitted reflection waits (``after_seconds``); 0: no debounce."""
    poll_s: Annotated[float, Field(gt=0)] = 60.0
    """How often due reflections are started (the strategy's tick period)."""
    query_limit: Annotated[int, Field(ge=1)] = 5
    """Memories the search before extraction shows the model; ``query_limit // 4`` windows."""
    search_limit: Annotated[int, Field(ge=1)] = 10
    """Memories the search tool returns at answer time, all injected."""
    enable_inserts: bool = True
    """Offer the ``Memory`` tool when memories exist (without any, trustcall always does)."""
    enable_deletes: bool = False
    """Offer ``RemoveDoc``: outdated copies the model was shown are removed."""


@dataclasses.dataclass(slots=True)
class _Thread:
    """One session's messages since its last reflection, and its pending submission."""

    messages: list[Message] = dataclasses.field(default_factory=list)
    submitted: int = 0  # how many of them the pending submission holds
    due: float | None = None  # when the pending reflection runs; None: nothing submitted
    submission: int = 0  # the run's number of that submission: stale heap entries are skipped


@register
class LangMemLike(Strategy):
    """Debounced background reflection with LangMem's tool-calling extraction; search at answer."""

    name = "langmem-like"
    Config = LangMemLikeConfig
    config: LangMemLikeConfig

    def __init__(self, config: LangMemLikeConfig | None = None) -> None:
        super().__init__(config)
        self._sessions = SessionHistories()
        self._threads: dict[tuple[int, int], _Thread] = {}
        self._due: list[tuple[float, int, int, int]] = []  # (due, user, session, submission)
        self._reflections: dict[int, int] = {}  # per user: reflections started (session tags)
        self.submissions = 0
        """Reflections submitted (one per reply)."""
        self.cancelled = 0
        """Submissions cancelled by a later one for the same thread before their delay."""

    @property
    def tick_period_s(self) -> float | None:
        """``poll_s`` while reflections wait; none without a delay (they start at once)."""
        return self.config.poll_s if self.config.delay_s > 0 else None

    # -- foreground -------------------------------------------------------------
    def build_prompt(self, ctx: TurnContext, msg: Message) -> Prompt:
        """System prompt + what the search tool returns for the message + the session + it."""
        history = self._sessions.of(ctx.user, msg.session)
        memories = self._search_tool(ctx, msg)
        cfg = self.config
        return history.prompt(msg, cfg.arrange(memories), cfg.memory_position)

    def _search_tool(self, ctx: TurnContext, msg: Message) -> list[Memory]:
        """``search_memory(query=message)``: the ``search_limit`` most similar memories."""
        query = query_vector(ctx, msg)
        if query is None:
            return []
        records, sims = ctx.store.query(query)
        nearest = np.argsort(-sims, kind="stable")[: self.config.search_limit]
        found = [records[i] for i in nearest]
        hit_all(found, ctx.now)
        return found

    def after_turn(self, ctx: TurnContext, msg: Message, reply: Message | None) -> None:
        """Add the exchange to its thread and submit the thread, replacing a pending submission.

        Without a reply the application has nothing to submit (the chat call raised):
        the message waits in its thread for the next submission.
        """
        history = self._sessions.of(ctx.user, msg.session)
        history.exchange(ctx.tokens, msg, reply)
        key = (ctx.user, msg.session)
        thread = self._threads.get(key)
        if thread is None:
            thread = self._threads[key] = _Thread()
        if thread.due is not None and thread.due <= ctx.now:  # ran before this message
            thread = self._threads[key] = self._start(ctx, key)
        thread.messages.append(msg)
        if reply is None:
            return
        thread.messages.append(reply)
        self.submissions += 1
        if thread.due is not None:
            self.cancelled += 1
        thread.submitted, thread.submission = len(thread.messages), self.submissions
        if self.config.delay_s == 0:
            self._start(ctx, key)
            return
        thread.due = ctx.now + self.config.delay_s
        heapq.heappush(self._due, (thread.due, key[0], key[1], thread.submission))

    def on_tick(self, ctx: TickContext) -> None:
        """Start every reflection whose delay has passed, in due order."""
        due = self._due
        ready: list[tuple[int, int]] = []
        while due and due[0][0] <= ctx.now:
            _, user, session, submission = heapq.heappop(due)
            thread = self._threads.get((user, session))
            if thread is not None and thread.submission == submission and thread.due is not None:
                ready.append((user, session))
        if not ready:
            return
        contexts = {c.user: c for c in ctx.contexts()}
        for key in ready:
            if key[0] in contexts:  # a user of this simulation (always, in a fresh strategy)
                self._start(contexts[key[0]], key)

    def _start(self, ctx: TurnContext, key: tuple[int, int]) -> _Thread:
        """Hand the submitted messages to a background reflection; return the thread after.

        Messages that came after the submission (with no reply, so never submitted)
        stay in the thread for the next one.
        """
        thread = self._threads.pop(key)
        batch, rest = thread.messages[: thread.submitted], thread.messages[thread.submitted :]
        after = _Thread(rest)
        if rest:
            self._threads[key] = after
        number = self._reflections.get(ctx.user, 0)
        self._reflections[ctx.user] = number + 1
        ctx.defer(lambda job_ctx: self._reflect(job_ctx, batch, number))
        return after

    # -- background -------------------------------------------------------------
    def _reflect(self, ctx: TurnContext, batch: list[Message], number: int) -> None:
        """``MemoryStoreManager.invoke`` on ``batch``: search, one extraction call, writes.

        A call that fails for good ends the reflection: the executor sets the
        exception on its future and nothing is retried.
        """
        shown = self._search_before_extraction(ctx, batch)
        doc_ids = [_doc_id(ctx.user_id, m.id) for m in shown]
        system = self._system_prompt(ctx.tokens, shown, doc_ids)
        session_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"memsim:{ctx.user_id}:{number}"))
        conversation = _conversation(ctx.tokens, batch, session_id)
        factoids = self.extract(ctx, conversation, system)
        self._apply(ctx, factoids, shown)

    def _search_before_extraction(self, ctx: TurnContext, batch: list[Message]) -> list[Memory]:
        """The memories the model is shown: the ``query_limit`` best hits of every window.

        One query per window of :func:`_dilated_windows`; the synchronous path runs
        each first with the store's default limit (its result unused), then with
        ``limit=query_limit``. Hits are merged by memory (a later query's score
        wins, as ``_sort_results`` keys them) and the best ``query_limit`` kept.
        """
        limit = self.config.query_limit
        windows = _dilated_windows(batch, limit // 4)
        for text in windows:  # the unlimited searches, results dropped
            ctx.store.query(ctx.embedder.embed([text])[0])
        hits: dict[int, tuple[float, Memory]] = {}
        for text in windows:
            records, sims = ctx.store.query(ctx.embedder.embed([text])[0])
            for i in np.argsort(-sims, kind="stable")[:limit]:
                hits[records[i].id] = (float(sims[i]), records[i])
        ranked = sorted(hits.values(), key=lambda hit: -hit[0])
        return [memory for _, memory in ranked[:limit]]

    def _system_prompt(self, tokens: TokenCounter, shown: list[Memory], doc_ids: list[str]) -> str:
        """The text the call is billed by: tools, system message and instructions, in order.

        It opens with a line naming the tools offered, then LangMem's system message
        (with trustcall's ``<existing>`` block when memories were shown), then the
        instructions that open LangMem's user message. Its token count is recorded
        as the sum of the parts counted apart plus the tool definitions by the
        cookbook's rule (``TokenCounter.remember``), so the call costs what LangMem's
        request costs; the first line keeps the text apart from any text another
        caller counts.
        """
        cfg = self.config
        if shown:
            tools = [PATCH_DOC_TOOL] + ([MEMORY_TOOL] if cfg.enable_inserts else [])
            if cfg.enable_deletes:
                tools.append(remove_doc_tool(doc_ids))
            instances = "\n".join(
                f'<instance id={doc_id} schema_type="Memory">\n{_record(m)}\n</instance>'
                for doc_id, m in zip(doc_ids, shown, strict=True)
            )
            command = PATCH_COMMAND + (INSERT_COMMAND if cfg.enable_inserts else "")
            existing = f"{command}\n<existing>\n{instances}\n</existing>\n"
            system = MEMORY_SUBROUTINE + "\n\n" + existing
        else:
            tools, system = [MEMORY_TOOL], MEMORY_SUBROUTINE
        label = f"[tools: {', '.join(t[0] for t in tools)}]\n"
        text = label + system + "\n" + MEMORY_INSTRUCTIONS + USER_REQUEST
        counted = (
            function_tokens(tokens, tools)
            + tokens.count_split(system)
            + tokens.count_split(MEMORY_INSTRUCTIONS + USER_REQUEST)
        )
        tokens.remember(text, counted)
        return text

    def _apply(self, ctx: TurnContext, factoids: list[Factoid], shown: list[Memory]) -> None:
        """Carry out the tool calls: puts (each embedded and written), then removals."""
        puts: list[Memory] = []
        removed: list[int] = []
        for factoid in _latest_per_slot(factoids):
            target, stale = _known(factoid, shown)
            if target is None and not stale:
                if self.config.enable_inserts or not shown:
                    puts.append(ctx.new_memory(factoid))
                continue
            if target is None:  # only older copies: patch the first shown
                target, stale = stale[0], stale[1:]
                puts.append(_patched(ctx, target, factoid))
            if self.config.enable_deletes:
                removed += [m.id for m in stale]
        for memory in puts:
            vector = ctx.embedder.embed([memory.text])
            if any(m.id == memory.id for m in shown):
                ctx.store.delete([memory.id])  # a put on an existing key replaces it
            ctx.store.add([memory], vector)
        for memory_id in removed:
            ctx.store.delete([memory_id])


def _record(memory: Memory) -> str:
    """How trustcall writes a stored memory's value: the Python ``str`` of its dict."""
    return str({"content": memory.text})


def _doc_id(user_id: str, memory_id: int) -> str:
    """The id trustcall shows a stored memory under: ``MemoryStoreManager._stable_id``.

    The store key LangMem gives a new memory is a random UUID; here a UUID drawn
    from the user and the memory's number stands in for it.
    """
    key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"memsim:{user_id}:memory:{memory_id}"))
    return uuid.uuid5(uuid.NAMESPACE_DNS, str((NAMESPACE, user_id, key))).hex


def _conversation(tokens: TokenCounter, batch: list[Message], session_id: str) -> list[Message]:
    """The batch as LangMem's session block, one copy of each message carrying its share.

    ``utils.get_conversation`` merges runs of one role (contents joined by a
    newline) and joins ``pretty_repr`` blocks (title, blank line, content) with a
    blank line, inside `` <session_ID>`` tags. Each copy's ``transcript_tokens``
    holds its piece of that text (the first also the opening tag, the last the
    closing one), cut after newlines, where the tokenizer cuts too; ground truth
    is the original's.
    """
    pieces = []
    for i, msg in enumerate(batch):
        starts_run = i == 0 or batch[i - 1].role != msg.role
        head = message_title(msg.role) + "\n\n" if starts_run else ""
        if i + 1 == len(batch):
            tail = f"\n</session_{session_id}>"
        else:
            tail = "\n" if batch[i + 1].role == msg.role else "\n\n"
        pieces.append(head + msg.text + tail)
    pieces[0] = f" \n\n<session_{session_id}>\n" + pieces[0]
    return [
        dataclasses.replace(msg, transcript_tokens=tokens.count_split(piece))
        for msg, piece in zip(batch, pieces, strict=True)
    ]


def _runs(messages: list[Message]) -> list[tuple[str, str]]:
    """``merge_message_runs``: consecutive messages of one role as one, joined by newlines."""
    runs: list[tuple[str, list[str]]] = []
    for msg in messages:
        if runs and runs[-1][0] == msg.role:
            runs[-1][1].append(msg.text)
        else:
            runs.append((msg.role, [msg.text]))
    return [(role, "\n".join(texts)) for role, texts in runs]


def _conversation_text(messages: list[Message]) -> str:
    """``utils.get_conversation``: the ``pretty_repr`` of each run, blank lines between."""
    return "\n\n".join(message_title(role) + "\n\n" + text for role, text in _runs(messages))


def _dilated_windows(messages: list[Message], n: int) -> list[str]:
    """``utils.get_dialated_windows``: the last 1, 2, 4… messages (``n`` at most), as text.

    It stops at the first size already taken (the whole batch); ``n = 0`` (a
    ``query_limit`` under 4) gives no window, hence no search.
    """
    windows, sizes = [], set()
    for i in range(n):
        size = min(len(messages), 1 << i)
        if size in sizes:
            break
        sizes.add(size)
        windows.append(_conversation_text(messages[len(messages) - size :]))
    return windows


def _latest_per_slot(factoids: list[Factoid]) -> list[Factoid]:
    """The facts one call records: per slot its newest version; each made-up text once."""
    chosen: dict[object, Factoid] = {}
    for factoid in factoids:
        key = factoid.facts[0][0] if factoid.facts else ("text", factoid.content)
        kept = chosen.get(key)
        if kept is None or (factoid.facts and factoid.facts[0][1] >= kept.facts[0][1]):
            chosen[key] = factoid
    return list(chosen.values())


def _known(factoid: Factoid, shown: list[Memory]) -> tuple[Memory | None, list[Memory]]:
    """What the model makes of ``factoid`` against the memories shown (ground truth).

    Returns the memory that already holds it (same slot, same or newer version; a
    made-up fact: the same text), if any, and the shown memories holding an older
    version of its slot, in the order shown.
    """
    if not factoid.facts:
        same = [m for m in shown if m.text == factoid.content]
        return (same[0] if same else None), []
    versions = dict(factoid.facts)
    current: list[Memory] = []
    older: list[Memory] = []
    for memory in shown:
        for slot, version in memory.facts:
            if slot in versions:
                (current if version >= versions[slot] else older).append(memory)
                break
    return (current[0] if current else None), older


def _patched(ctx: TurnContext, old: Memory, factoid: Factoid) -> Memory:
    """``old`` after a ``PatchDoc`` that replaced its content: same key, new text."""
    return dataclasses.replace(
        old,
        text=factoid.content,
        line_tokens=ctx.tokens.count("- " + factoid.content + "\n"),
        category=factoid.category,
        embedding_model=ctx.embedder.model,
        content_hash=normalized_hash(factoid.content),
        facts=factoid.facts,
    )
