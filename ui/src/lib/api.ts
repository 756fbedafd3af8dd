/**
 * The client of Hearth's local HTTP API: the only way the UI reaches the backend.
 *
 * Same origin by default (`window.__HEARTH__.apiBase` overrides it); the bearer token comes
 * from the desktop shell (`window.__HEARTH__.token`), or, in a browser, from the `?token=` of
 * the URL `hearth serve` prints (taken once by {@link adoptUrlToken}) or a token typed in the
 * prompt or Settings, both kept for the tab (sessionStorage). Every failure becomes an {@link ApiError} with the server's OpenAI error
 * fields, so the UI can say what went wrong, and tell "this server does not have that
 * endpoint yet" (404 `unknown_url`) from other failures.
 */

import { isAbortError, readSseJson } from './sse';
import type {
  About,
  ApiErrorBody,
  ChatEvent,
  Conversation,
  ConversationWithMessages,
  DownloadStatus,
  Health,
  ModelsListing,
  ProviderView,
  SamplingSettings,
  ServableModel,
  ServerSettings,
  SettingsUpdate,
  KvCacheStatus,
  KvCacheCleared,
  SystemReport,
} from './types';

declare global {
  interface Window {
    __HEARTH__?: { token?: string; apiBase?: string };
    __TAURI__?: {
      dialog?: {
        open?: (options?: Record<string, unknown>) => Promise<unknown>;
      };
      [key: string]: unknown;
    };
  }
}

/** Where the tab keeps its token or key (from the URL, the prompt or Settings). */
export const ACCESS_KEY_STORAGE = 'hearth.accessKey';
/** The query parameter of the URL `hearth serve` prints. */
export const TOKEN_PARAM = 'token';

/**
 * Takes `?token=` from the address once: keeps it for this tab (sessionStorage) and removes
 * it from the address bar (`history.replaceState`, so it is not left in the history, a
 * bookmark or a shared link). Returns the token taken, or null when the URL had none.
 */
export function adoptUrlToken(win: Window = window): string | null {
  let url: URL;
  try {
    url = new URL(win.location.href);
  } catch {
    return null;
  }
  if (!url.searchParams.has(TOKEN_PARAM)) return null;
  const token = (url.searchParams.get(TOKEN_PARAM) ?? '').trim();
  url.searchParams.delete(TOKEN_PARAM);
  try {
    win.history.replaceState(win.history.state, '', `${url.pathname}${url.search}${url.hash}`);
  } catch {
    // No history API: the token stays visible, but still works.
  }
  if (!token) return null;
  try {
    win.sessionStorage.setItem(ACCESS_KEY_STORAGE, token);
  } catch {
    // Private mode without storage: the prompt will ask again.
  }
  return token;
}

/** Whether this page has a token to send (the desktop shell's, or one kept for the tab). */
export function hasStoredToken(win: Window = window): boolean {
  if (win.__HEARTH__?.token) return true;
  try {
    return Boolean(win.sessionStorage.getItem(ACCESS_KEY_STORAGE));
  } catch {
    return false;
  }
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly type: string | null;
  readonly param: string | null;
  /** Seconds the server asked to wait (Retry-After), when it did. */
  retryAfter: number | null = null;

  constructor(status: number, body: ApiErrorBody | undefined, fallback: string) {
    super(body?.message || fallback);
    this.name = 'ApiError';
    this.status = status;
    this.code = body?.code ?? null;
    this.type = body?.type ?? null;
    this.param = body?.param ?? null;
  }

  /** The server has no such route: an older server without this feature. */
  get isMissingEndpoint(): boolean {
    return this.status === 404 && (this.code === 'unknown_url' || this.code === null);
  }

  get isUnauthorized(): boolean {
    return this.status === 401;
  }

  get isNetwork(): boolean {
    return this.status === 0;
  }
}

/** A readable sentence for any error the UI catches. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.isMissingEndpoint) return 'This Hearth server does not offer this yet.';
    if (error.isUnauthorized) return 'The server needs its access token: open the URL `hearth serve` printed, or enter the token.';
    return error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export interface ClientOptions {
  /** The API's origin and path prefix; '' means this page's origin. */
  base?: string;
  /** The bearer token to send, or null for none; read on every request. */
  token?: () => string | null | undefined;
  fetch?: typeof fetch;
}

export interface Download {
  blob: Blob;
  filename: string;
}

function defaultToken(): string | null {
  if (typeof window === 'undefined') return null;
  const fromShell = window.__HEARTH__?.token;
  if (fromShell) return fromShell;
  try {
    return window.sessionStorage.getItem(ACCESS_KEY_STORAGE);
  } catch {
    return null;
  }
}

function defaultBase(): string {
  if (typeof window === 'undefined') return '';
  return (window.__HEARTH__?.apiBase ?? '').replace(/\/+$/, '');
}

async function errorFrom(response: Response): Promise<ApiError> {
  let body: ApiErrorBody | undefined;
  try {
    const json = (await response.json()) as { error?: ApiErrorBody };
    if (json && typeof json === 'object' && json.error && typeof json.error === 'object') {
      body = json.error;
    }
  } catch {
    // Not JSON: the status line will do.
  }
  const fallback = `The server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}.`;
  const error = new ApiError(response.status, body, fallback);
  const retryAfter = Number(response.headers.get('Retry-After'));
  if (Number.isFinite(retryAfter) && retryAfter >= 0) error.retryAfter = retryAfter;
  return error;
}

function networkError(error: unknown): ApiError {
  const detail = error instanceof Error && error.message ? ` (${error.message})` : '';
  return new ApiError(
    0,
    { code: 'network_error', message: `Cannot reach the Hearth server${detail}.` },
    'Cannot reach the Hearth server.',
  );
}

function filenameFrom(disposition: string | null, fallback: string): string {
  if (!disposition) return fallback;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ''));
    } catch {
      // Fall through to the plain name.
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  const name = plain?.[1]?.trim();
  // Only a plain file name: never a path.
  return name && !/[\\/]/.test(name) ? name : fallback;
}

export class ApiClient {
  private readonly base: string;
  private readonly token: () => string | null | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.base = (options.base ?? defaultBase()).replace(/\/+$/, '');
    this.token = options.token ?? defaultToken;
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  private headers(json: boolean, accept = 'application/json'): Headers {
    const headers = new Headers({ Accept: accept });
    if (json) headers.set('Content-Type', 'application/json');
    const token = this.token();
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return headers;
  }

  private async send(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    accept?: string,
  ): Promise<Response> {
    const init: RequestInit = {
      method,
      headers: this.headers(body !== undefined, accept),
      credentials: 'omit',
      cache: 'no-store',
    };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (signal) init.signal = signal;
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path), init);
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw networkError(error);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  /** A JSON request; resolves to the parsed body (undefined for 204 or an empty body). */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const response = await this.send(method, path, body, signal);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, undefined, 'The server sent an answer that is not JSON.');
    }
  }

  /**
   * A request answered with server-sent events; `onEvent` gets each JSON payload. Errors before
   * the stream (4xx/5xx) reject with an ApiError; aborting `signal` rejects with AbortError.
   */
  async stream(
    method: string,
    path: string,
    body: unknown,
    onEvent: (payload: unknown) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const response = await this.send(method, path, body, signal, 'text/event-stream');
    if (!response.body) throw new ApiError(response.status, undefined, 'The server sent no stream.');
    try {
      await readSseJson(response.body, onEvent, signal);
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw networkError(error);
    }
  }

  /** A file to save (exports): its bytes and the name the server gave it. */
  async download(path: string, fallbackName: string): Promise<Download> {
    const response = await this.send('GET', path, undefined, undefined, '*/*');
    const blob = await response.blob();
    return { blob, filename: filenameFrom(response.headers.get('Content-Disposition'), fallbackName) };
  }

  // ---- health and models served ----

  health(): Promise<Health> {
    return this.send('GET', '/health')
      .then((response) => response.json() as Promise<Health>)
      .catch(async (error: unknown) => {
        // 503 while a model loads still carries the body.
        if (error instanceof ApiError && error.status === 503) return { status: 'loading' };
        throw error;
      });
  }

  async servableModels(): Promise<ServableModel[]> {
    const list = await this.request<{ data?: ServableModel[] }>('GET', '/v1/models');
    return Array.isArray(list?.data) ? list.data : [];
  }

  // ---- conversations ----

  async listConversations(search = '', signal?: AbortSignal): Promise<Conversation[]> {
    const query = search.trim() ? `?search=${encodeURIComponent(search.trim())}` : '';
    const list = await this.request<{ data?: Conversation[] }>('GET', `/api/conversations${query}`, undefined, signal);
    return Array.isArray(list?.data) ? list.data : [];
  }

  async listDeletedConversations(): Promise<Conversation[]> {
    const list = await this.request<{ data?: Conversation[] }>('GET', '/api/conversations?deleted=true');
    return Array.isArray(list?.data) ? list.data : [];
  }

  createConversation(fields: {
    title?: string;
    model?: string | null;
    system_prompt?: string | null;
    settings?: SamplingSettings | null;
  }): Promise<Conversation> {
    return this.request('POST', '/api/conversations', fields);
  }

  getConversation(id: number, signal?: AbortSignal): Promise<ConversationWithMessages> {
    return this.request('GET', `/api/conversations/${id}`, undefined, signal);
  }

  updateConversation(
    id: number,
    fields: {
      title?: string;
      model?: string | null;
      system_prompt?: string | null;
      settings?: SamplingSettings | null;
    },
  ): Promise<Conversation> {
    return this.request('PATCH', `/api/conversations/${id}`, fields);
  }

  deleteConversation(id: number): Promise<void> {
    return this.request('DELETE', `/api/conversations/${id}`);
  }

  restoreConversation(id: number): Promise<Conversation> {
    return this.request('POST', `/api/conversations/${id}/restore`);
  }

  exportConversation(id: number, format: 'markdown' | 'json'): Promise<Download> {
    const extension = format === 'markdown' ? 'md' : 'json';
    return this.download(
      `/api/conversations/${id}/export?format=${format}`,
      `conversation-${id}.${extension}`,
    );
  }

  importConversation(exported: unknown): Promise<Conversation> {
    return this.request('POST', '/api/conversations/import', exported);
  }

  sendMessage(
    id: number,
    content: string,
    model: string | null,
    onEvent: (event: ChatEvent) => void,
    signal?: AbortSignal,
    confirmRemote = false,
  ): Promise<void> {
    return this.streamAnswer(`/api/conversations/${id}/messages`, { content }, model, onEvent, signal, confirmRemote);
  }

  regenerate(
    id: number,
    model: string | null,
    onEvent: (event: ChatEvent) => void,
    signal?: AbortSignal,
    confirmRemote = false,
  ): Promise<void> {
    return this.streamAnswer(`/api/conversations/${id}/regenerate`, {}, model, onEvent, signal, confirmRemote);
  }

  editMessage(
    id: number,
    messageId: number,
    content: string,
    model: string | null,
    onEvent: (event: ChatEvent) => void,
    signal?: AbortSignal,
    confirmRemote = false,
  ): Promise<void> {
    return this.streamAnswer(
      `/api/conversations/${id}/messages/${messageId}/edit`,
      { content },
      model,
      onEvent,
      signal,
      confirmRemote,
    );
  }

  /**
   * Streams an answer from one of the conversation endpoints; `model` is sent only when one is
   * chosen, `confirm_remote` only once the user agreed to send to a remote provider.
   */
  private streamAnswer(
    path: string,
    body: Record<string, unknown>,
    model: string | null,
    onEvent: (event: ChatEvent) => void,
    signal?: AbortSignal,
    confirmRemote = false,
  ): Promise<void> {
    const full: Record<string, unknown> = { ...body };
    if (model) full.model = model;
    if (confirmRemote) full.confirm_remote = true;
    return this.stream('POST', path, full, onEvent as (payload: unknown) => void, signal);
  }

  // ---- remote providers ----

  async listProviders(): Promise<ProviderView[]> {
    const list = await this.request<{ data?: ProviderView[] }>('GET', '/api/providers');
    return Array.isArray(list?.data) ? list.data : [];
  }

  addProvider(fields: { name: string; base_url: string; api_key?: string }): Promise<ProviderView> {
    return this.request('POST', '/api/providers', fields);
  }

  removeProvider(name: string): Promise<void> {
    return this.request('DELETE', `/api/providers/${encodeURIComponent(name)}`);
  }

  // ---- models and downloads ----

  async listModels(): Promise<ModelsListing> {
    const listing = await this.request<Partial<ModelsListing>>('GET', '/api/models');
    return {
      models: Array.isArray(listing?.models) ? listing.models : [],
      broken: Array.isArray(listing?.broken) ? listing.broken : [],
      catalog: Array.isArray(listing?.catalog) ? listing.catalog : [],
      recommendation: listing?.recommendation ?? null,
    };
  }

  deleteModel(id: string): Promise<void> {
    return this.request('DELETE', `/api/models/${encodeURIComponent(id)}`);
  }

  importModel(path: string, options: { in_place?: boolean; id?: string } = {}): Promise<unknown> {
    const body: { path: string; in_place?: boolean; id?: string } = { path };
    if (options.in_place) body.in_place = true;
    if (options.id) body.id = options.id;
    return this.request('POST', '/api/models/import', body);
  }

  async listDownloads(): Promise<DownloadStatus[]> {
    const list = await this.request<DownloadStatus[] | { data?: DownloadStatus[]; downloads?: DownloadStatus[] }>(
      'GET',
      '/api/downloads',
    );
    if (Array.isArray(list)) return list;
    return list?.data ?? list?.downloads ?? [];
  }

  startDownload(model: string): Promise<DownloadStatus> {
    return this.request('POST', '/api/downloads', { model });
  }

  getDownload(id: number): Promise<DownloadStatus> {
    return this.request('GET', `/api/downloads/${id}`);
  }

  controlDownload(id: number, action: 'pause' | 'resume' | 'cancel'): Promise<DownloadStatus | undefined> {
    return this.request('POST', `/api/downloads/${id}/${action}`);
  }

  downloadEvents(id: number, onStatus: (status: DownloadStatus) => void, signal?: AbortSignal): Promise<void> {
    return this.stream('GET', `/api/downloads/${id}/events`, undefined, (payload) => {
      if (payload && typeof payload === 'object' && 'state' in payload) onStatus(payload as DownloadStatus);
    }, signal);
  }

  // ---- system and settings ----

  system(): Promise<SystemReport> {
    return this.request('GET', '/api/system');
  }

  settings(): Promise<ServerSettings> {
    return this.request('GET', '/api/settings');
  }

  updateSettings(update: SettingsUpdate): Promise<ServerSettings> {
    return this.request('PATCH', '/api/settings', update);
  }

  kvCache(): Promise<KvCacheStatus> {
    return this.request('GET', '/api/kv-cache');
  }

  clearKvCache(): Promise<KvCacheCleared> {
    return this.request('DELETE', '/api/kv-cache');
  }

  // ---- about ----

  about(): Promise<About> {
    return this.request('GET', '/api/about');
  }

  /** The third-party licences, as text (`path` is the About answer's `licenses_url`). */
  async licenses(path: string): Promise<string> {
    const response = await this.send('GET', path, undefined, undefined, 'text/plain');
    return response.text();
  }
}

/** The client the app uses. */
export const api = new ApiClient();
