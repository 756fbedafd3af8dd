/**
 * The open conversation and the answer streaming into it.
 *
 * One session for the whole app, so an answer keeps streaming while the user looks at the
 * Models or Hardware page; opening another conversation stops it (the server keeps what was
 * said, with status `stopped`). The server owns the history: after every answer the local copy
 * is replaced by what the server saved.
 */

import { ApiError, api, errorMessage } from './api';
import { app } from './app.svelte';
import { completionTokens } from './format';
import { router } from './router.svelte';
import { isAbortError } from './sse';
import type { ChatEvent, ConversationWithMessages, Message, SamplingSettings } from './types';

let localIds = -1;

/** How long a stopped answer waits for the server's saved copy, and how often it asks. */
const STOP_SYNC_MS = 3000;
const STOP_SYNC_POLL_MS = 150;
/** How long a message waits for its model to load before the refusal is shown. */
const MODEL_LOAD_WAIT_MS = 120_000;

function localMessage(role: Message['role'], content: string, status: Message['status'], conversationId: number): Message {
  const now = Date.now();
  return {
    id: localIds--,
    conversation_id: conversationId,
    role,
    content,
    status,
    metrics: null,
    created_at: now,
    updated_at: now,
  };
}

type StreamCall = (
  onEvent: (event: ChatEvent) => void,
  signal: AbortSignal,
  confirmRemote: boolean,
) => Promise<void>;

/** The server's answer when a message would be a conversation's first to a remote provider. */
export const REMOTE_CONFIRMATION_CODE = 'remote_confirmation_required';

/** A question shown before a message leaves the machine; `answer` settles it. */
export interface RemoteConfirmation {
  message: string;
  answer: (send: boolean) => void;
}

class ChatSession {
  conversation = $state<ConversationWithMessages | null>(null);
  loading = $state(false);
  loadError = $state('');
  streaming = $state(false);
  /** Stop was pressed: waiting for the server to save the answer as it stood. */
  stopping = $state(false);
  /** The answer being written, while `streaming`. */
  streamingId = $state<number | null>(null);
  /** When the streaming answer began to think, while it thinks (for the live time). */
  thinkingSince = $state<number | null>(null);
  /** Prompt tokens of the last request, and tokens streamed since. */
  promptTokens = $state<number | null>(null);
  streamedTokens = $state(0);
  nCtx = $state<number | null>(null);
  droppedMessages = $state(0);
  /** Choices made before the conversation exists (it is created on the first message). */
  draftModel = $state<string | null>(null);
  draftSystemPrompt = $state('');
  draftSettings = $state<SamplingSettings>({});
  /** What a screen reader hears when an answer starts or ends. */
  announcement = $state('');
  /** Text to put back in the composer after a refused message. */
  restoreDraft = $state<string | null>(null);
  /** A failure to show under the messages (not tied to one answer). */
  notice = $state('');
  /** Set while the user is asked whether a message may go to a remote provider. */
  remoteConfirmation = $state<RemoteConfirmation | null>(null);
  private controller: AbortController | null = null;
  private pendingSaves: Promise<unknown>[] = [];
  private loadToken = 0;
  private loadingId: number | null = null;

  get id(): number | null {
    return this.conversation?.id ?? null;
  }

  get model(): string | null {
    return this.conversation ? this.conversation.model ?? app.defaultModel : this.draftModel ?? app.defaultModel;
  }

  get systemPrompt(): string {
    return this.conversation ? this.conversation.system_prompt ?? '' : this.draftSystemPrompt;
  }

  get samplingSettings(): SamplingSettings {
    return (this.conversation ? this.conversation.settings : this.draftSettings) ?? {};
  }

  /** Tokens the conversation fills in the context: the last prompt plus its answer. */
  get contextUsed(): number | null {
    if (this.promptTokens === null) return null;
    return this.promptTokens + this.streamedTokens;
  }

  get contextLimit(): number | null {
    return this.nCtx ?? app.contextLength(this.model);
  }

  /** The load `open` started, so a message sent meanwhile goes to the right conversation. */
  private loadingPromise: Promise<void> | null = null;

  /** Opens a conversation (null: a new, empty one). */
  open(id: number | null): Promise<void> {
    if (id !== null && id === this.id && !this.loadError) return this.loadingPromise ?? Promise.resolve();
    if (id !== null && id === this.loadingId && this.loadingPromise) return this.loadingPromise;
    if (this.streaming) this.stop();
    const token = ++this.loadToken;
    this.notice = '';
    this.loadError = '';
    this.droppedMessages = 0;
    this.nCtx = null;
    this.promptTokens = null;
    this.streamedTokens = 0;
    this.conversation = null;
    this.loadingId = id;
    if (id === null) {
      this.draftModel = null;
      this.draftSystemPrompt = '';
      this.draftSettings = {};
      this.loadingPromise = null;
      this.loading = false;
      return Promise.resolve();
    }
    this.loading = true;
    const promise = (async () => {
      try {
        const conversation = await api.getConversation(id);
        if (token !== this.loadToken) return;
        this.conversation = conversation;
        this.usageFromHistory();
      } catch (error) {
        if (token !== this.loadToken) return;
        this.conversation = null;
        this.loadError =
          error instanceof ApiError && error.status === 404
            ? 'This conversation does not exist (or was deleted).'
            : errorMessage(error);
      } finally {
        if (token === this.loadToken) {
          this.loading = false;
          this.loadingPromise = null;
          this.loadingId = null;
        }
      }
    })();
    this.loadingPromise = promise;
    return promise;
  }

  /** Context use as the last finished answer recorded it. */
  private usageFromHistory(): void {
    const messages = this.conversation?.messages ?? [];
    for (let index = messages.length - 1; index >= 0; index--) {
      const metrics = messages[index]?.metrics;
      if (metrics && typeof metrics.prompt_tokens === 'number') {
        this.promptTokens = metrics.prompt_tokens;
        this.streamedTokens = completionTokens(metrics) ?? 0;
        return;
      }
    }
    this.promptTokens = null;
    this.streamedTokens = 0;
  }

  async reload(): Promise<void> {
    const id = this.id;
    if (id === null) return;
    try {
      const conversation = await api.getConversation(id);
      if (this.id === id && !this.streaming) {
        this.conversation = conversation;
      }
    } catch {
      // Keep what is shown.
    }
  }

  /** Waits for settings saves in flight, so a message never overtakes its system prompt. */
  private async settled(): Promise<void> {
    const pending = this.pendingSaves;
    this.pendingSaves = [];
    await Promise.allSettled(pending);
  }

  private async ensureConversation(): Promise<number | null> {
    // A conversation still loading is the one the message is for.
    if (this.loadingPromise) await this.loadingPromise;
    if (this.loadError) {
      this.notice = this.loadError;
      return null;
    }
    await this.settled();
    if (this.conversation) return this.conversation.id;
    try {
      const settings = Object.keys(this.draftSettings).length ? { ...this.draftSettings } : null;
      const created = await api.createConversation({
        model: this.draftModel ?? app.defaultModel,
        system_prompt: this.draftSystemPrompt.trim() ? this.draftSystemPrompt : null,
        settings,
      });
      this.conversation = { ...created, messages: [] };
      router.go({ name: 'chat', id: created.id }, true);
      void app.refreshConversations();
      return created.id;
    } catch (error) {
      this.notice = errorMessage(error);
      app.error(error);
      return null;
    }
  }

  async send(text: string): Promise<boolean> {
    const content = text.trim();
    if (!content || this.streaming) return false;
    const id = await this.ensureConversation();
    if (id === null || !this.conversation) return false;
    const user = localMessage('user', content, 'complete', id);
    this.conversation.messages.push(user);
    const model = this.model;
    await this.run(user.id, (onEvent, signal, confirmRemote) =>
      api.sendMessage(id, content, model, onEvent, signal, confirmRemote), () => {
      // Never saved (refused before the stream): take the message back out.
      if (this.conversation) this.conversation.messages = this.conversation.messages.filter((message) => message.id !== user.id);
      return content;
    });
    return true;
  }

  async regenerate(): Promise<void> {
    const conversation = this.conversation;
    if (!conversation || this.streaming) return;
    const before = [...conversation.messages];
    let lastUser = -1;
    for (let index = conversation.messages.length - 1; index >= 0; index--) {
      if (conversation.messages[index]?.role === 'user') {
        lastUser = index;
        break;
      }
    }
    if (lastUser === -1) return;
    conversation.messages = conversation.messages.slice(0, lastUser + 1);
    const model = this.model;
    const id = conversation.id;
    await this.run(conversation.messages[lastUser]!.id, (onEvent, signal, confirmRemote) =>
      api.regenerate(id, model, onEvent, signal, confirmRemote), () => {
      if (this.conversation?.id === id) this.conversation.messages = before;
      return null;
    });
  }

  async edit(messageId: number, text: string): Promise<void> {
    const conversation = this.conversation;
    const content = text.trim();
    if (!conversation || this.streaming || !content) return;
    const index = conversation.messages.findIndex((message) => message.id === messageId);
    if (index === -1) return;
    const before = [...conversation.messages];
    const edited = { ...conversation.messages[index]!, content };
    conversation.messages = [...conversation.messages.slice(0, index), edited];
    const model = this.model;
    const id = conversation.id;
    await this.run(messageId, (onEvent, signal, confirmRemote) =>
      api.editMessage(id, messageId, content, model, onEvent, signal, confirmRemote), () => {
      if (this.conversation?.id === id) this.conversation.messages = before;
      return null;
    });
  }

  /** Shows the remote-provider question and waits for the answer (a stop counts as no). */
  private askRemoteConfirmation(message: string, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const settle = (send: boolean) => {
        if (this.remoteConfirmation?.answer === settle) this.remoteConfirmation = null;
        resolve(send);
      };
      this.remoteConfirmation = { message, answer: settle };
      signal.addEventListener('abort', () => settle(false), { once: true });
    });
  }

  stop(): void {
    if (!this.controller || this.controller.signal.aborted) return;
    this.stopping = true;
    this.controller.abort();
  }

  /**
   * After a stop, the server saves the answer once it notices the client left, perhaps with a
   * token or two the page never received. Waiting for that saved copy (briefly) before the
   * answer counts as stopped means the page and the history agree, and the text shown at
   * "stopped" never changes afterwards.
   */
  private async syncAfterStop(conversationId: number, loadToken: number): Promise<void> {
    const deadline = Date.now() + STOP_SYNC_MS;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, STOP_SYNC_POLL_MS));
      if (this.loadToken !== loadToken || this.conversation?.id !== conversationId) return;
      let saved: ConversationWithMessages;
      try {
        saved = await api.getConversation(conversationId);
      } catch {
        return;
      }
      if (this.loadToken !== loadToken || this.conversation?.id !== conversationId) return;
      if (!saved.messages.some((message) => message.status === 'streaming')) {
        this.conversation = saved;
        return;
      }
    }
  }

  /**
   * Streams one answer into the conversation. `userMessageId` is the local or saved id of the
   * message being answered; `refused` undoes the local changes when the server refused the
   * request before any answer (it may return text to put back in the composer).
   */
  private async run(userMessageId: number, call: StreamCall, refused: () => string | null): Promise<void> {
    const conversation = this.conversation;
    if (!conversation) return;
    const conversationId = conversation.id;
    const loadToken = this.loadToken;
    const answer = localMessage('assistant', '', 'streaming', conversationId);
    conversation.messages.push(answer);
    const controller = new AbortController();
    this.controller = controller;
    this.streaming = true;
    this.announcement = 'The assistant is answering.';
    this.streamingId = answer.id;
    this.notice = '';
    const previousUsage = { prompt: this.promptTokens, streamed: this.streamedTokens, dropped: this.droppedMessages };
    this.streamedTokens = 0;
    this.promptTokens = null;
    this.thinkingSince = null;
    let started = false;
    let finished = false;
    let userId = userMessageId;
    let answerId = answer.id;

    const current = (): Message | undefined =>
      this.conversation?.id === conversationId ? this.conversation.messages.find((message) => message.id === answerId) : undefined;

    const onEvent = (event: ChatEvent) => {
      if (!event || typeof event !== 'object') return;
      switch (event.type) {
        case 'start': {
          started = true;
          this.promptTokens = typeof event.prompt_tokens === 'number' ? event.prompt_tokens : null;
          this.droppedMessages = event.dropped_messages ?? 0;
          if (typeof event.n_ctx === 'number') this.nCtx = event.n_ctx;
          // Without n_ctx in the event, the active plan (GET /api/system) knows it.
          else if (this.contextLimit === null) void app.refreshSystem();
          const messages = this.conversation?.id === conversationId ? this.conversation.messages : null;
          if (messages && event.user_message) {
            const index = messages.findIndex((message) => message.id === userId);
            if (index !== -1) messages[index] = event.user_message;
            userId = event.user_message.id;
          }
          if (messages && event.assistant_message) {
            const index = messages.findIndex((message) => message.id === answerId);
            if (index !== -1) {
              const shown = messages[index]!;
              messages[index] = { ...event.assistant_message, content: shown.content, reasoning: shown.reasoning, reasoning_tokens: shown.reasoning_tokens };
            }
            answerId = event.assistant_message.id;
            this.streamingId = answerId;
          }
          break;
        }
        case 'reasoning': {
          started = true;
          const message = current();
          if (message && typeof event.text === 'string') {
            if (this.thinkingSince === null) this.thinkingSince = Date.now();
            message.reasoning = (message.reasoning ?? '') + event.text;
            message.reasoning_tokens = (message.reasoning_tokens ?? 0) + 1;
            this.streamedTokens += 1;
          }
          break;
        }
        case 'token': {
          started = true;
          const message = current();
          if (message && typeof event.text === 'string') {
            if (this.thinkingSince !== null) {
              // The thinking is over: its time stands until the server's figure replaces it.
              message.reasoning_ms = Date.now() - this.thinkingSince;
              this.thinkingSince = null;
            }
            message.content += event.text;
            this.streamedTokens += 1;
          }
          break;
        }
        case 'done': {
          finished = true;
          const messages = this.conversation?.id === conversationId ? this.conversation.messages : null;
          const index = messages?.findIndex((message) => message.id === answerId) ?? -1;
          if (messages && index !== -1 && event.message) messages[index] = event.message;
          const metrics = event.message?.metrics;
          if (metrics) {
            if (typeof metrics.prompt_tokens === 'number') this.promptTokens = metrics.prompt_tokens;
            const tokens = completionTokens(metrics);
            if (tokens !== undefined) this.streamedTokens = tokens;
          }
          break;
        }
        case 'error': {
          finished = true;
          const messages = this.conversation?.id === conversationId ? this.conversation.messages : null;
          const index = messages?.findIndex((message) => message.id === answerId) ?? -1;
          const text = event.error?.message ?? 'The answer failed.';
          if (messages && index !== -1) {
            messages[index] = { ...(event.message ?? messages[index]!), status: 'error', notice: text };
          }
          this.notice = text;
          break;
        }
        default:
          break;
      }
    };

    try {
      // A model that is still loading answers 503 with Retry-After: wait for it, a while.
      const loadDeadline = Date.now() + MODEL_LOAD_WAIT_MS;
      let confirmRemote = false;
      for (;;) {
        try {
          await call(onEvent, controller.signal, confirmRemote);
          break;
        } catch (error) {
          // The first message to a remote provider leaves the machine: ask, then send again.
          if (error instanceof ApiError && error.code === REMOTE_CONFIRMATION_CODE && !started && !confirmRemote) {
            if (!(await this.askRemoteConfirmation(error.message, controller.signal))) throw error;
            confirmRemote = true;
            continue;
          }
          const loading =
            error instanceof ApiError && error.status === 503 && error.code === 'model_loading' && !started;
          if (!loading || Date.now() > loadDeadline) throw error;
          const message = current();
          if (message) message.notice = 'Loading the model…';
          const wait = Math.min(5, Math.max(0.5, error.retryAfter ?? 1)) * 1000;
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, wait);
            controller.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              reject(new DOMException('The request was stopped.', 'AbortError'));
            }, { once: true });
          });
          if (message) delete message.notice;
        }
      }
      if (!finished) {
        const message = current();
        if (message) {
          message.status = 'error';
          message.notice = 'The answer ended early: the connection to the server closed.';
        }
      }
    } catch (error) {
      if (isAbortError(error)) {
        const message = current();
        if (message) message.status = 'stopped';
      } else if (!started) {
        // Refused before the stream: undo, and say why.
        if (this.conversation?.id === conversationId) {
          this.conversation.messages = this.conversation.messages.filter((message) => message.id !== answerId);
        }
        const text = refused();
        this.promptTokens = previousUsage.prompt;
        this.streamedTokens = previousUsage.streamed;
        this.droppedMessages = previousUsage.dropped;
        this.notice = errorMessage(error);
        if (text !== null) this.restoreDraft = text;
      } else {
        const message = current();
        if (message) {
          message.status = 'error';
          message.notice = errorMessage(error);
        }
        this.notice = errorMessage(error);
      }
    } finally {
      if (controller.signal.aborted) await this.syncAfterStop(conversationId, loadToken);
      if (this.controller === controller) this.controller = null;
      this.streaming = false;
      this.stopping = false;
      this.thinkingSince = null;
      const last = this.conversation?.id === conversationId ? this.conversation.messages.at(-1) : undefined;
      this.announcement =
        last?.status === 'error'
          ? `The answer failed. ${last.notice ?? ''}`
          : controller.signal.aborted
            ? 'The answer was stopped.'
            : finished
              ? `Answer complete: ${last?.content ?? ''}`
              : '';
      this.streamingId = null;
      void app.refreshConversations();
      // The server's copy wins: titles it chose, ids, saved content.
      if (finished && !controller.signal.aborted && this.conversation?.id === conversationId) void this.reload();
    }
  }

  // ---- conversation settings ----

  private save(fields: Parameters<typeof api.updateConversation>[1]): void {
    const conversation = this.conversation;
    if (!conversation) return;
    const id = conversation.id;
    const saving = api
      .updateConversation(id, fields)
      .then((updated) => {
        if (this.conversation?.id === id) {
          Object.assign(this.conversation, { ...updated, messages: this.conversation.messages });
        }
        void app.refreshConversations();
      })
      .catch((error: unknown) => {
        app.error(error);
      });
    this.pendingSaves.push(saving);
  }

  setModel(model: string | null): void {
    if (this.conversation) {
      this.conversation.model = model;
      this.save({ model });
    } else {
      this.draftModel = model;
    }
  }

  setSystemPrompt(text: string): void {
    if (this.conversation) {
      if ((this.conversation.system_prompt ?? '') === text) return;
      this.conversation.system_prompt = text || null;
      this.save({ system_prompt: text.trim() ? text : null });
    } else {
      this.draftSystemPrompt = text;
    }
  }

  setSettings(settings: SamplingSettings): void {
    if (this.conversation) {
      this.conversation.settings = settings;
      this.save({ settings: Object.keys(settings).length ? settings : null });
    } else {
      this.draftSettings = settings;
    }
  }

  async rename(title: string): Promise<void> {
    const conversation = this.conversation;
    const clean = title.trim();
    if (!conversation || !clean || clean === conversation.title) return;
    conversation.title = clean;
    this.save({ title: clean });
    await this.settled();
  }
}

export const chat = new ChatSession();
