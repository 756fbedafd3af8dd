/** Numbers as people read them: sizes, speeds, durations, fit badges, answer metrics. */

import type { AnswerMetrics, DownloadStatus, Fit, FitBadge, Plan } from './types';

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '—';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function formatRate(tokensPerSecond: number | undefined): string {
  if (tokensPerSecond === undefined || !Number.isFinite(tokensPerSecond)) return '—';
  return `${tokensPerSecond >= 100 ? Math.round(tokensPerSecond) : tokensPerSecond.toFixed(1)} tok/s`;
}

/** Tokens an answer produced, whatever key the server used. */
export function completionTokens(metrics: AnswerMetrics | null | undefined): number | undefined {
  if (!metrics) return undefined;
  const value = metrics.completion_tokens ?? metrics.generated_tokens;
  return typeof value === 'number' ? value : undefined;
}

/** "TTFT 120 ms · 45.2 tok/s · 87 tokens" */
export function metricsLine(metrics: AnswerMetrics): string {
  const tokens = completionTokens(metrics);
  const parts = [
    `TTFT ${formatMs(metrics.ttft_ms)}`,
    formatRate(metrics.decode_tokens_per_s),
    `${tokens ?? '—'} tokens`,
  ];
  const speculation = speculationLine(metrics);
  if (speculation) parts.push(speculation);
  return parts.join(' · ');
}

/**
 * A thinking block's summary: "Thought for 3.2 s · 184 tokens" once done, "Thinking… 1.4 s ·
 * 52 tokens" while it goes on.
 */
export function thinkingLine(ms: number | undefined, tokens: number | undefined, live: boolean): string {
  const parts = [live ? 'Thinking…' : 'Thought'];
  if (ms !== undefined && Number.isFinite(ms) && ms > 0) {
    const seconds = `${(ms / 1000).toFixed(1)} s`;
    parts[0] = live ? `Thinking… ${seconds}` : `Thought for ${seconds}`;
  }
  const line = [parts[0]];
  if (tokens !== undefined && tokens > 0) line.push(`${tokens} ${tokens === 1 ? 'token' : 'tokens'}`);
  return line.join(' · ');
}

/** Speculative decoding's share of an answer, or '' when nothing was guessed. */
export function speculationLine(metrics: AnswerMetrics): string {
  const drafted = metrics.drafted_tokens ?? 0;
  if (drafted <= 0) return '';
  const accepted = metrics.accepted_tokens ?? 0;
  return `${accepted}/${drafted} guesses accepted (${Math.round((100 * accepted) / drafted)}%)`;
}

export const FIT_LABELS: Record<FitBadge, string> = {
  gpu: 'Fits on GPU',
  partial: 'Partial offload',
  cpu: 'CPU only',
  too_large: 'Too large',
};

/** A loaded model's speculative decoding, as its plan says: off, n-gram lookup, or the draft. */
export function speculativeLabel(plan: Plan): string {
  switch (plan.speculative) {
    case 'ngram':
      return 'n-gram lookup';
    case 'draft':
      return plan.draft_model ? `draft model ${plan.draft_model}` : 'draft model';
    default:
      return 'off';
  }
}

export function fitLabel(fit: Fit | undefined | null): string {
  if (!fit) return '';
  return FIT_LABELS[fit.badge] ?? fit.badge;
}

export function fitDetail(fit: Fit | undefined | null): string {
  if (!fit) return '';
  const parts: string[] = [];
  if (fit.badge !== 'too_large' && typeof fit.predicted_decode_tokens_per_s === 'number') {
    parts.push(`~${formatRate(fit.predicted_decode_tokens_per_s)}`);
  }
  if (typeof fit.n_ctx === 'number') parts.push(`${fit.n_ctx.toLocaleString('en-US')} ctx`);
  if (typeof fit.memory_bytes === 'number') parts.push(formatBytes(fit.memory_bytes));
  if (fit.estimated) parts.push('estimated');
  return parts.join(' · ');
}

export function downloadedBytes(status: DownloadStatus): number {
  return status.bytes_done ?? status.downloaded_bytes ?? 0;
}

/** 0..1, or null while the size is not known. */
export function downloadFraction(status: DownloadStatus): number | null {
  if (status.state === 'installed') return 1;
  const total = status.total_bytes;
  if (!total || total <= 0) return null;
  return Math.min(1, Math.max(0, downloadedBytes(status) / total));
}

export const TERMINAL_DOWNLOAD_STATES = new Set(['installed', 'cancelled']);

export function downloadIsActive(status: DownloadStatus): boolean {
  return !['installed', 'cancelled', 'failed', 'paused'].includes(status.state);
}

export function downloadStateLabel(status: DownloadStatus): string {
  switch (status.state) {
    case 'queued':
    case 'starting':
      return 'Starting…';
    case 'waiting_for_other_download':
      return 'Waiting for another download of this model';
    case 'downloading':
      return 'Downloading';
    case 'retrying':
      return `Retrying${status.reason ? `: ${status.reason}` : ''}`;
    case 'paused':
      return 'Paused';
    case 'verifying':
      return 'Verifying';
    case 'installed':
      return 'Installed';
    case 'failed':
      return `Failed${status.error ? `: ${status.error}` : ''}`;
    case 'cancelled':
      return 'Cancelled';
    default:
      return String(status.state);
  }
}

export function relativeTime(milliseconds: number, now = Date.now()): string {
  const seconds = Math.round((now - milliseconds) / 1000);
  if (seconds < 60) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  if (days < 7) return `${days} d ago`;
  return new Date(milliseconds).toLocaleDateString();
}
