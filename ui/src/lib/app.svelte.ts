/**
 * State shared by every page: connection, models, downloads, settings, theme, the
 * conversation list and transient notices. Components read it; only methods here change it.
 */

import { ACCESS_KEY_STORAGE, ApiError, api, errorMessage, hasStoredToken } from './api';
import { isAbortError } from './sse';
import { downloadIsActive } from './format';
import type {
  Conversation,
  DownloadStatus,
  Health,
  ModelsListing,
  ServerSettings,
  SystemReport,
  Theme,
} from './types';

const THEME_STORAGE = 'hearth.theme';

export type Connection = 'unknown' | 'ok' | 'unreachable' | 'unauthorized';

export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'error';
  action?: { label: string; testid?: string; run: () => void };
}

function storedTheme(): Theme {
  try {
    const value = localStorage.getItem(THEME_STORAGE);
    if (value === 'light' || value === 'dark' || value === 'system') return value;
  } catch {
    // No storage: follow the system.
  }
  return 'system';
}

class AppState {
  connection = $state<Connection>('unknown');
  /** Whether this tab has a token or key to send (set again by `start`, after the URL's). */
  hasToken = $state(false);
  connectionDetail = $state('');
  health = $state<Health | null>(null);
  /** Model ids `/v1/models` lists: what a chat can use right now. */
  servable = $state<string[]>([]);
  /** The remote provider of each servable model that has one (its answers leave this machine). */
  remoteProviders = $state<Record<string, string>>({});
  listing = $state<ModelsListing | null>(null);
  modelsError = $state('');
  modelsLoaded = $state(false);
  system = $state<SystemReport | null>(null);
  systemError = $state('');
  systemMissing = $state(false);
  settings = $state<ServerSettings | null>(null);
  settingsMissing = $state(false);
  settingsError = $state('');
  theme = $state<Theme>(storedTheme());
  /** How many times the user has picked a theme (see refreshSettings). */
  private themeChoices = 0;
  conversations = $state<Conversation[]>([]);
  conversationsError = $state('');
  search = $state('');
  downloads = $state<Record<number, DownloadStatus>>({});
  toasts = $state<Toast[]>([]);
  private toastSeq = 0;
  private watched = new Set<number>();
  private listAbort: AbortController | null = null;

  /** Installed ids and servable ids, without duplicates, servable first. */
  get modelChoices(): string[] {
    const ids = [...this.servable];
    for (const model of this.listing?.models ?? []) {
      if (!ids.includes(model.id)) ids.push(model.id);
    }
    return ids;
  }

  /** A model's name where one is chosen: remote models say so, since their answers leave this machine. */
  modelLabel(id: string): string {
    const provider = this.remoteProviders[id];
    return provider ? `${id} (remote: ${provider})` : id;
  }

  /** No model to chat with: the first-run screen. Known only once models were asked for. */
  get needsFirstModel(): boolean {
    return this.modelsLoaded && this.modelChoices.length === 0;
  }

  /** The model a new conversation gets. */
  get defaultModel(): string | null {
    const choices = this.modelChoices;
    const preferred = this.settings?.default_model;
    if (preferred && choices.includes(preferred)) return preferred;
    const loaded = this.health?.models?.find((model) => model.state === 'loaded' || model.state === 'ready');
    if (loaded && choices.includes(loaded.id)) return loaded.id;
    return choices[0] ?? null;
  }

  /** n_ctx of a model, from the active plan or the planner's fit. */
  contextLength(model: string | null | undefined): number | null {
    if (!model) return null;
    const plan = this.system?.loaded?.find((entry) => entry.id === model)?.plan;
    if (plan?.n_ctx) return plan.n_ctx;
    const fit = this.listing?.models.find((entry) => entry.id === model)?.fit;
    return fit?.n_ctx ?? null;
  }

  async start(): Promise<void> {
    this.hasToken = typeof window !== 'undefined' && hasStoredToken();
    this.applyTheme();
    if (typeof window !== 'undefined' && window.matchMedia) {
      window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => this.applyTheme());
    }
    await this.refreshAll();
  }

  async refreshAll(): Promise<void> {
    await this.checkHealth();
    await Promise.all([
      this.refreshModels(),
      this.refreshConversations(),
      this.refreshSettings(),
      this.refreshSystem(),
      this.resumeDownloads(),
    ]);
  }

  private noteFailure(error: unknown): void {
    if (error instanceof ApiError) {
      if (error.isUnauthorized) {
        this.connection = 'unauthorized';
        this.connectionDetail = error.message;
      } else if (error.isNetwork) {
        this.connection = 'unreachable';
        this.connectionDetail = error.message;
      }
    }
  }

  async checkHealth(): Promise<void> {
    try {
      this.health = await api.health();
      if (this.connection !== 'unauthorized') this.connection = 'ok';
    } catch (error) {
      this.noteFailure(error);
      if (!(error instanceof ApiError && error.isNetwork)) this.connection = this.connection === 'unknown' ? 'ok' : this.connection;
    }
  }

  async refreshModels(): Promise<void> {
    const [servable, listing] = await Promise.allSettled([api.servableModels(), api.listModels()]);
    if (servable.status === 'fulfilled') {
      this.servable = servable.value.map((model) => model.id);
      const remote: Record<string, string> = {};
      for (const model of servable.value) if (model.provider) remote[model.id] = model.provider;
      this.remoteProviders = remote;
    } else {
      this.noteFailure(servable.reason);
    }
    if (listing.status === 'fulfilled') {
      this.listing = listing.value;
      this.modelsError = '';
    } else {
      this.noteFailure(listing.reason);
      this.modelsError = errorMessage(listing.reason);
    }
    // Only claim "no model" when the server answered both questions.
    this.modelsLoaded = servable.status === 'fulfilled' && listing.status === 'fulfilled';
    if (servable.status === 'fulfilled' && listing.status === 'fulfilled' && this.connection !== 'unauthorized') {
      this.connection = 'ok';
    }
  }

  async refreshConversations(): Promise<void> {
    this.listAbort?.abort();
    const controller = new AbortController();
    this.listAbort = controller;
    try {
      this.conversations = await api.listConversations(this.search, controller.signal);
      this.conversationsError = '';
    } catch (error) {
      if (isAbortError(error)) return;
      this.noteFailure(error);
      this.conversationsError = errorMessage(error);
    }
  }

  async refreshSystem(): Promise<void> {
    try {
      this.system = await api.system();
      this.systemMissing = false;
      this.systemError = '';
    } catch (error) {
      this.noteFailure(error);
      this.systemMissing = error instanceof ApiError && error.isMissingEndpoint;
      this.systemError = errorMessage(error);
    }
  }

  async refreshSettings(): Promise<void> {
    // A theme the user picks while this request is out wins over the server's older answer.
    const themeChoicesBefore = this.themeChoices;
    try {
      this.settings = await api.settings();
      this.settingsMissing = false;
      this.settingsError = '';
      const theme = this.settings?.theme;
      const chosenMeanwhile = this.themeChoices !== themeChoicesBefore;
      if (chosenMeanwhile && this.settings) this.settings.theme = this.theme;
      else if (theme === 'light' || theme === 'dark' || theme === 'system') this.setTheme(theme);
    } catch (error) {
      this.noteFailure(error);
      this.settingsMissing = error instanceof ApiError && error.isMissingEndpoint;
      this.settingsError = errorMessage(error);
    }
  }

  /** The user picked a theme (as opposed to one arriving from the server). */
  chooseTheme(theme: Theme): void {
    this.themeChoices += 1;
    this.setTheme(theme);
  }

  setTheme(theme: Theme): void {
    this.theme = theme;
    try {
      localStorage.setItem(THEME_STORAGE, theme);
    } catch {
      // Not kept: it still applies now.
    }
    this.applyTheme();
  }

  applyTheme(): void {
    if (typeof document === 'undefined') return;
    const dark =
      this.theme === 'dark' ||
      (this.theme === 'system' && typeof window !== 'undefined' && window.matchMedia?.('(prefers-color-scheme: dark)').matches);
    document.documentElement.dataset.theme = dark ? 'dark' : 'light';
    document.documentElement.style.colorScheme = dark ? 'dark' : 'light';
  }

  /** The key this browser sends (not needed in the desktop app, which gets a token). */
  get accessKey(): string {
    try {
      return sessionStorage.getItem(ACCESS_KEY_STORAGE) ?? '';
    } catch {
      return '';
    }
  }

  setAccessKey(key: string): void {
    try {
      if (key) sessionStorage.setItem(ACCESS_KEY_STORAGE, key);
      else sessionStorage.removeItem(ACCESS_KEY_STORAGE);
    } catch {
      // Private mode without storage: nothing to keep it in.
    }
    this.hasToken = Boolean(key) || this.hasShellToken;
    this.connection = 'unknown';
    void this.refreshAll();
  }

  get hasShellToken(): boolean {
    return typeof window !== 'undefined' && Boolean(window.__HEARTH__?.token);
  }

  /** Whether the page should ask for the access token: none to send, or the server refused it. */
  get needsToken(): boolean {
    return !this.hasShellToken && (!this.hasToken || this.connection === 'unauthorized');
  }

  // ---- notices ----

  toast(text: string, kind: Toast['kind'] = 'info', action?: Toast['action'], ttlMs = 6000): number {
    const id = ++this.toastSeq;
    const toast: Toast = { id, text, kind };
    if (action) toast.action = action;
    this.toasts = [...this.toasts, toast];
    setTimeout(() => this.dismiss(id), ttlMs);
    return id;
  }

  dismiss(id: number): void {
    this.toasts = this.toasts.filter((toast) => toast.id !== id);
  }

  error(error: unknown): void {
    this.noteFailure(error);
    this.toast(errorMessage(error), 'error');
  }

  // ---- downloads ----

  async resumeDownloads(): Promise<void> {
    try {
      const list = await api.listDownloads();
      for (const status of list) {
        this.setDownload(status);
        if (downloadIsActive(status)) void this.watchDownload(status.id);
      }
    } catch {
      // An older server or none running: the Models page says so when it is opened.
    }
  }

  /** Which download each request (`catalog-id:QUANT`) started in this page. */
  private requested: Record<string, number> = {};

  /** The download of a request made here, or the newest one of the same repository. */
  downloadFor(request: string, repo?: string): DownloadStatus | undefined {
    const started = this.requested[request];
    if (started !== undefined && this.downloads[started]) return this.downloads[started];
    if (!repo) return undefined;
    return Object.values(this.downloads)
      .sort((a, b) => b.id - a.id)
      .find((status) => status.state !== 'cancelled' && status.repo?.toLowerCase() === repo.toLowerCase());
  }

  async startDownload(model: string): Promise<DownloadStatus | null> {
    try {
      const status = await api.startDownload(model);
      this.setDownload(status);
      this.requested[model] = status.id;
      void this.watchDownload(status.id);
      return status;
    } catch (error) {
      this.error(error);
      return null;
    }
  }

  async controlDownload(id: number, action: 'pause' | 'resume' | 'cancel'): Promise<void> {
    try {
      const status = await api.controlDownload(id, action);
      if (status && typeof status === 'object' && 'state' in status) this.setDownload(status);
      else this.setDownload(await api.getDownload(id));
      if (action === 'resume') void this.watchDownload(id);
    } catch (error) {
      this.error(error);
    }
  }

  /**
   * Records a download's new status. Statuses come over two connections (the events stream and
   * the answers to pause/resume), so an older one can arrive last: the byte count never goes
   * back for the same download (ids are never reused).
   */
  private setDownload(status: DownloadStatus): void {
    const previous = this.downloads[status.id];
    const before = previous ? (previous.bytes_done ?? previous.downloaded_bytes ?? 0) : 0;
    const now = status.bytes_done ?? status.downloaded_bytes ?? 0;
    if (previous && now < before) {
      this.downloads[status.id] = { ...status, bytes_done: before, downloaded_bytes: before };
    } else {
      this.downloads[status.id] = status;
    }
  }

  dismissDownload(id: number): void {
    delete this.downloads[id];
  }

  /** Follows a download's events until it stops; reconnects if the stream drops. */
  async watchDownload(id: number): Promise<void> {
    if (this.watched.has(id)) return;
    this.watched.add(id);
    let failures = 0;
    try {
      while (failures < 20) {
        try {
          await api.downloadEvents(id, (status) => {
            const before = this.downloads[id]?.state;
            this.setDownload(status);
            if (status.state === 'installed' && before !== 'installed') {
              this.toast(`${status.model_id ?? 'The model'} is installed.`);
              void this.refreshModels();
            }
          });
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) break;
          failures++;
        }
        const current = this.downloads[id];
        if (!current || !downloadIsActive(current)) break;
        // The stream ended while the download runs (a dropped connection): ask again.
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * (failures + 1))));
        try {
          this.setDownload(await api.getDownload(id));
        } catch {
          failures++;
        }
      }
    } finally {
      this.watched.delete(id);
    }
  }
}

export const app = new AppState();
