/**
 * The shapes of the local API's answers (docs/ui-contract.md). Every field the server sends is
 * declared, optional where the UI can do without it: crates/hearth-server/src/ui_contract.rs
 * checks this file against the server's answers (a field sent but not declared, declared but
 * never sent, or of another type fails `cargo test -p hearth-server`).
 */

export type Role = 'system' | 'user' | 'assistant';
export type MessageStatus = 'streaming' | 'complete' | 'stopped' | 'error';

/** Sampling settings kept with a conversation (the fields of a chat completion request). */
export interface SamplingSettings {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  seed?: number;
  max_tokens?: number;
  stop?: string[] | string;
  ignore_eos?: boolean;
  /** `none` turns a reasoning model's thinking off for this conversation. */
  reasoning_effort?: string;
}

export interface Conversation {
  id: number;
  title: string;
  model: string | null;
  system_prompt: string | null;
  settings: SamplingSettings | null;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
  notice?: string;
}

/** An answer's figures as the server recorded them. */
export interface AnswerMetrics {
  ttft_ms?: number;
  tpot_ms?: number;
  decode_tokens_per_s?: number;
  prefill_tokens_per_s?: number;
  prompt_tokens?: number;
  cached_prompt_tokens?: number;
  completion_tokens?: number;
  generated_tokens?: number;
  e2e_ms?: number;
  queue_ms?: number;
  /** Speculative decoding: guesses verified, guesses accepted, and accepted / drafted. */
  drafted_tokens?: number;
  accepted_tokens?: number;
  acceptance_rate?: number;
  finish_reason?: string;
  [key: string]: unknown;
}

export interface Message {
  id: number;
  conversation_id: number;
  role: Role;
  content: string;
  /** A reasoning model's thinking before its answer, its token count and time (absent when it did not think). */
  reasoning?: string;
  reasoning_tokens?: number;
  reasoning_ms?: number;
  status: MessageStatus;
  metrics: AnswerMetrics | null;
  created_at: number;
  updated_at: number;
  hidden?: boolean;
  notice?: string;
}

export interface ConversationWithMessages extends Conversation {
  messages: Message[];
}

export interface ApiErrorBody {
  message?: string;
  type?: string;
  param?: string | null;
  code?: string | null;
  /** The token counts of `context_length_exceeded`. */
  n_prompt_tokens?: number;
  n_ctx?: number;
}

/** One event of a chat stream (`/messages`, `/regenerate`, `/edit`). */
export type ChatEvent =
  | {
      type: 'start';
      conversation_id?: number;
      model?: string;
      user_message?: Message;
      assistant_message?: Message;
      prompt_tokens?: number;
      dropped_messages?: number;
      n_ctx?: number;
    }
  | { type: 'token'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'done'; message: Message }
  | { type: 'error'; error?: ApiErrorBody; message?: Message };

export type FitBadge = 'gpu' | 'partial' | 'cpu' | 'too_large';

export interface Fit {
  badge: FitBadge;
  /** The planner estimated this variant from another one or from its published size. */
  estimated?: boolean;
  quantization?: string;
  predicted_decode_tokens_per_s?: number;
  n_ctx?: number;
  n_gpu_layers?: number;
  memory_bytes?: number;
}

export interface GgufSummary {
  gguf_version?: number;
  architecture?: string | null;
  name?: string | null;
  parameter_count?: number | null;
  context_length?: number | null;
  block_count?: number | null;
  file_type?: number | null;
  quantization?: string | null;
  has_chat_template?: boolean;
  tensor_count?: number;
  metadata_count?: number;
}

/** Which tool's files an imported model came from. */
export interface ImportOrigin {
  tool: 'file' | 'ollama' | 'lm_studio' | 'hugging_face_cache';
  model_name?: string;
  repo?: string;
  revision?: string;
}

export interface InstalledModel {
  format_version?: number;
  id: string;
  file_name?: string;
  size_bytes?: number;
  sha256?: string;
  installed_at?: string;
  in_place?: boolean;
  source?: {
    kind?: 'catalog' | 'hub' | 'import';
    catalog_id?: string;
    quantization?: string;
    repo?: string;
    revision?: string;
    file?: string;
    url?: string;
    commit?: string | null;
    origin?: ImportOrigin;
  };
  summary?: GgufSummary;
  fit?: Fit;
}

export interface CatalogFile {
  quantization: string;
  /** Known only for verified files. */
  size_bytes?: number | null;
  fit?: Fit;
}

export interface CatalogEntry {
  id: string;
  display_name?: string;
  family?: string;
  repo?: string;
  license?: string;
  parameters_billions?: number;
  context_length?: number;
  purpose?: string;
  default_quantization?: string;
  files: CatalogFile[];
  installed?: boolean;
  installed_ids?: string[];
  fit?: Fit;
}

export interface Recommendation {
  model: string;
  name?: string;
  quantization?: string;
  size_bytes?: number | null;
  fit?: Fit;
  reason?: string;
}

export interface ModelsListing {
  models: InstalledModel[];
  broken: { id: string; reason: string }[];
  catalog: CatalogEntry[];
  recommendation?: Recommendation | null;
}

/** Download states: the server's (`starting`, `retrying`...) and the contract's (`queued`...). */
export type DownloadStateName =
  | 'queued'
  | 'starting'
  | 'waiting_for_other_download'
  | 'downloading'
  | 'retrying'
  | 'paused'
  | 'verifying'
  | 'installed'
  | 'failed'
  | 'cancelled';

export interface DownloadStatus {
  id: number;
  model_id?: string;
  repo?: string;
  file?: string;
  state: DownloadStateName;
  bytes_done?: number;
  downloaded_bytes?: number;
  total_bytes?: number | null;
  bytes_per_second?: number;
  eta_seconds?: number | null;
  error?: string;
  reason?: string;
  delay_seconds?: number;
  failed_attempts?: number;
}

/** An entry of `GET /v1/models`. */
export interface ServableModel {
  id: string;
  object?: string;
  created?: number;
  owned_by?: string;
  /** The remote provider that serves it (its answers leave this machine); absent for local models. */
  provider?: string;
}

/** A remote OpenAI-compatible provider (GET /api/providers); its key is never sent, only has_key. */
export interface ProviderView {
  name: string;
  base_url: string;
  has_key: boolean;
  /** Where the key is kept: "file" (the private keys file) or "os-keychain". */
  key_storage?: string;
  status: 'ok' | 'unreachable';
  error?: string;
  /** Its models as Hearth serves them: `NAME/MODEL`. */
  models: string[];
}

export interface HealthModel {
  id: string;
  state: string;
}

export interface Health {
  status: string;
  models?: HealthModel[];
  /** While a model loads (503). */
  error?: ApiErrorBody;
}

export interface Plan {
  architecture?: string;
  n_ctx?: number;
  n_ctx_total?: number;
  n_parallel?: number;
  n_gpu_layers?: number;
  n_threads?: number;
  kv_cache_type?: string;
  /** The most host memory the KV states of conversations pushed out of their slots take. */
  kv_host_budget_bytes?: number;
  /** true/false, or llama.cpp's "auto". */
  flash_attention?: boolean | string;
  memory_bytes?: number;
  /** Speculative decoding: who guesses tokens for the model to verify. */
  speculative?: 'off' | 'ngram' | 'draft';
  /** The draft model of `draft`: its catalog id. */
  draft_model?: string | null;
}

export interface SystemReport {
  version?: string;
  data_dir?: string;
  server?: {
    address?: string;
    port?: number;
    api_key_required?: boolean;
    /** The port from Settings, when another program held it at startup (the desktop app then
     * listens on `port` instead). */
    configured_port_taken?: number | null;
  };
  probe?: {
    cpu?: {
      architecture?: string;
      model?: string;
      physical_cores?: number;
      logical_cores?: number;
      features?: string[];
    };
    memory?: { total_bytes?: number; available_bytes?: number };
    gpus?: {
      name?: string;
      backend?: string;
      device_type?: string;
      total_bytes?: number | null;
      free_bytes?: number | null;
      /** Whether the engine offloads to it (a GPU two backends see is used through one). */
      used?: boolean;
    }[];
    bandwidth?: { cpu_gb_per_s?: number | null; gpu_gb_per_s?: number | null };
    /** The engine's llama.cpp backends (hearth_protocol::BackendReport). */
    backends?: BackendReport | null;
    os?: string;
    unified_memory?: boolean;
    models_disk_free_bytes?: number;
  };
  loaded?: { id: string; state?: string; plan?: Plan | null }[];
  /** Why the hardware probe failed (the report then holds only CPU count and memory). */
  probe_error?: string | null;
}

export type Theme = 'system' | 'light' | 'dark';

export interface ServerSettings {
  theme?: Theme;
  default_model?: string | null;
  api_port?: number;
  api_key_set?: boolean;
  /** `/v1/*` needs a key even on loopback. */
  require_key_for_openai_api?: boolean;
  /** The desktop app may ask the release feed for a newer Hearth (off by default). */
  check_for_updates?: boolean;
  /** The most the KV cache keeps on disk, in MiB (0: none); applies from the next start. */
  kv_cache_disk_budget_mb?: number;
  /** Also serve Ollama's API on 127.0.0.1:11434 (from the next start). */
  ollama_api?: boolean;
  data_dir?: string;
}

export interface SettingsUpdate {
  theme?: Theme;
  default_model?: string | null;
  api_port?: number;
  api_key?: string | null;
  /** The key set now: changing or removing a set key needs it. */
  current_api_key?: string;
  require_key_for_openai_api?: boolean;
  check_for_updates?: boolean;
  kv_cache_disk_budget_mb?: number;
  ollama_api?: boolean;
}

/** What the KV cache keeps on disk (GET /api/kv-cache). */
export interface KvCacheStatus {
  files: number;
  bytes: number;
  budget_bytes: number;
}

/** What clearing the KV cache removed (DELETE /api/kv-cache). */
export interface KvCacheCleared {
  removed_files: number;
  removed_bytes: number;
}

/** What this Hearth is (GET /api/about). */
export interface About {
  version: string;
  /** The short git commit, or `unknown` for a build outside a git checkout. */
  commit: string;
  /** The vendored llama-cpp-sys-2 crate that ships llama.cpp, and its ggml version. */
  llama_cpp: { llama_cpp_sys_2: string; ggml: string };
  /** Where the third-party licences are served (text, needs the key). */
  licenses_url: string;
}

/** What became of one backend library (hearth_protocol::BackendLibrary). */
export interface BackendLibrary {
  file_name: string;
  backend: string;
  variant?: string;
  state: 'loaded' | 'no_device' | 'not_chosen' | 'unsupported' | 'skipped' | 'failed';
  reason?: string;
}

/** The engine's backends: how they were built, the choice, each library (hearth_protocol::BackendReport). */
export interface BackendReport {
  build: 'static' | 'dynamic';
  choice: 'auto' | 'cpu' | 'vulkan' | 'cuda' | 'metal';
  libraries: BackendLibrary[];
  cpu_variant?: string;
  error?: string;
}
