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
   definitions counted by the OpenAI cookbook's rule, as ``serve-mock`` counts them.
   Valid tool calls end trustcall's graph: one LLM call per reflection.
4. **Tool calls applied** (``MemoryStoreManager._apply_manager_output``): a
   ``Memory`` call is a new memory, a ``PatchDoc`` replaces the content of the
   memory it names (same key), a ``RemoveDoc`` deletes it, an empty ``PatchDoc``
   changes nothing. Each put is one embedding call and one store write, as
   LangGraph's store embeds every put (its key kept by a patch: in memsim's store
   a delete and a write of the same id).
5. **The search tool at answer time** (``create_search_memory_tool``): the user's
   message is the query, its ``search_limit`` best hits are injected.

Dedup is the model's alone: neither ``MemoryStoreManager`` nor the store hashes
or compares what it writes, so a restated fact is dropped only when its memory
is among the ``query_limit`` the search showed the model.

The mock LLM is the model: ``ctx.llm.tool_extract`` gets the request (system
message, user message, tools, the memories shown under their ids) and answers
with its tool calls, decided by the mock from the hidden ground truth with the
scenario's extraction noise and ``update_error_rate``
(:meth:`sim.llm.MockLLM.tool_extract`). The strategy applies the calls as
``_apply_manager_output`` does; it never reads what a memory or a fact is about.
"""

from __future__ import annotations

import dataclasses
import heapq
import uuid
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from strategies.api import (
    ADD,
    DELETE,
    UPDATE,
    Memory,
    MemoryLayoutConfig,
    Message,
    Prompt,
    SessionHistories,
    Strategy,
    TickContext,
    TurnContext,
    hit_all,
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

# -- the tool definitions ------------------------------------------------------------------
# What ``bind_tools`` sends for langmem's Memory, trustcall's PatchDoc (its ``patches``
# items are trustcall's JsonPatch) and trustcall's RemoveDoc, trimmed to the fields the
# OpenAI cookbook's rule counts (``type``, ``description``, ``enum``, nested properties;
# not titles, ``required``, ``anyOf`` or examples).
MEMORY_TOOL: dict[str, Any] = {
    "name": "Memory",
    "description": "Call this tool once for each new memory you want to record. Use multi-tool "
    "calling to record multiple new memories.",
    "parameters": {
        "properties": {
            "content": {
                "type": "string",
                "description": "The memory as a well-written, standalone "
                "episode/fact/note/preference/etc. Refer to the user's instructions for more "
                "information the preferred memory organization.",
            }
        }
    },
}
PATCH_DOC_TOOL: dict[str, Any] = {
    "name": "PatchDoc",
    "description": "Respond with JSONPatch operations to update the existing JSON document "
    "based on the provided text and schema.",
    "parameters": {
        "properties": {
            "json_doc_id": {
                "type": "string",
                "description": "First, identify the json_doc_id of the document you are patching.",
            },
            "planned_edits": {
                "type": "string",
                "description": "Seconds, think step-by-step, reasoning over each required "
                "update and the corresponding JSONPatch operation to accomplish it. Cite the "
                "fields in the JSONSchema you referenced in developing this plan. Address each "
                "path as a group; don't switch between paths.\n Plan your patches in the "
                "following order:1. replace - this keeps collection size the same.\n2. remove "
                "- BE CAREFUL ABOUT ORDER OF OPERATIONS. Each operation is applied sequentially. "
                "For arrays, remove the highest indexed value first to avoid shifting indices. "
                "This ensures subsequent remove operations remain valid.\n 3. add (for arrays, "
                "use /- to efficiently append to end).",
            },
            "patches": {
                "type": "array",
                "description": "Finally, provide a list of JSONPatch operations to be applied "
                "to the previous tool call's response arguments. If none are required, return "
                "an empty list. This field is REQUIRED. Multiple patches in the list are "
                "applied sequentially in the order provided, with each patch building upon the "
                "result of the previous one. Take care to respect array bounds. Order patches "
                "as follows:\n 1. replace - this keeps collection size the same\n 2. remove - "
                "BE CAREFUL about order of operations. For arrays, remove the highest indexed "
                "value first to avoid shifting indices.\n 3. add - for arrays, use /- to "
                "efficiently append to end.",
                "items": {
                    "properties": {
                        "op": {
                            "type": "string",
                            "description": "The operation to be performed. Must be one of "
                            "'add', 'remove', 'replace'.",
                            "enum": ["add", "remove", "replace"],
                        },
                        "path": {
                            "type": "string",
                            "description": "A JSON Pointer path that references a location "
                            "within the target document where the operation is performed. "
                            "Note: patches are applied sequentially. If you remove a value, the "
                            "collection size changes before the next patch is applied.",
                        },
                        "value": {
                            "description": "The value to be used within the operation. "
                            "REQUIRED for 'add', 'replace', and 'test' operations. Pay close "
                            "attention to the json schema to ensure patched document will be "
                            "valid.",
                        },
                    }
                },
            },
        }
    },
}


def remove_doc_tool(doc_ids: list[str]) -> dict[str, Any]:
    """The ``RemoveDoc`` tool trustcall offers for the shown documents, listing their ids."""
    allowed = tuple(sorted(doc_ids))
    return {
        "name": "RemoveDoc",
        "description": "Use this tool to remove (delete) a doc by its ID.",
        "parameters": {
            "properties": {
                "json_doc_id": {
                    "type": "string",
                    "description": f"ID of the document to remove. Must be one of: {allowed}",
                }
            }
        },
    }


INSTRUCTION_CATEGORY = "instruction"
"""The category the mock extractor gives a planted instruction (``instruction_guard``)."""


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
        session_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"memsim:{ctx.user_id}:{number}"))
        decision = ctx.llm.tool_extract(
            batch,
            self.system_message(shown, doc_ids),
            user_message(batch, session_id),
            self.tools(shown, doc_ids),
            shown,
            doc_ids,
        )
        self._apply(ctx, decision.calls, shown)

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

    def tools(self, shown: list[Memory], doc_ids: list[str]) -> list[dict[str, Any]]:
        """The functions trustcall binds: ``Memory`` alone with nothing shown, else its updates.

        With memories shown, ``_ExtractUpdates`` offers ``PatchDoc``, then ``Memory``
        (with ``enable_inserts``), then ``RemoveDoc`` (with ``enable_deletes``).
        """
        if not shown:
            return [MEMORY_TOOL]
        cfg = self.config
        tools = [PATCH_DOC_TOOL] + ([MEMORY_TOOL] if cfg.enable_inserts else [])
        return tools + ([remove_doc_tool(doc_ids)] if cfg.enable_deletes else [])

    def system_message(self, shown: list[Memory], doc_ids: list[str]) -> str:
        """LangMem's system message; with memories shown, trustcall's ``<existing>`` block."""
        if not shown:
            return MEMORY_SUBROUTINE
        instances = "\n".join(
            f'<instance id={doc_id} schema_type="Memory">\n{_record(m)}\n</instance>'
            for doc_id, m in zip(doc_ids, shown, strict=True)
        )
        command = PATCH_COMMAND + (INSERT_COMMAND if self.config.enable_inserts else "")
        return f"{MEMORY_SUBROUTINE}\n\n{command}\n<existing>\n{instances}\n</existing>\n"

    def _apply(self, ctx: TurnContext, calls: list[Any], shown: list[Memory]) -> None:
        """Carry out the tool calls: puts (each embedded and written), then removals.

        With ``instruction_guard`` the application drops inserts and patches whose
        memory the extractor classed as an instruction.
        """
        puts: list[Memory] = []
        removed: list[int] = []
        guard = self.config.instruction_guard
        for call in calls:
            if call.event == DELETE:
                removed.append(shown[call.target].id)
            elif call.event in (ADD, UPDATE):
                if guard and call.factoid.category == INSTRUCTION_CATEGORY:
                    continue
                memory = ctx.new_memory(call.factoid)
                if call.event == UPDATE:
                    memory = _patched(memory, shown[call.target])
                puts.append(memory)
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


def user_message(batch: list[Message], session_id: str) -> str:
    """``MemoryManager._prepare_messages``' user message: instructions, then the session.

    The session is ``utils.get_conversation`` of the batch (runs of one role merged,
    ``pretty_repr`` blocks joined by blank lines) inside ``<session_ID>`` tags.
    """
    session = f"\n\n<session_{session_id}>\n{_conversation_text(batch)}\n</session_{session_id}>"
    return f"{MEMORY_INSTRUCTIONS}{USER_REQUEST} {session}"


def _patched(memory: Memory, old: Memory) -> Memory:
    """``memory`` (the patch's new content) under ``old``'s key, creation time, importance, hits.

    A ``PatchDoc`` replaces the content of the document it names; the store key stays.
    """
    memory.id, memory.created_at, memory.importance = old.id, old.created_at, old.importance
    memory.hit_count, memory.last_used_at = old.hit_count, old.last_used_at
    return memory
