import { describe, expect, it } from 'vitest';
import { downloadFraction, formatBytes, metricsLine, speculationLine, thinkingLine } from './format';

describe('format', () => {
  it('sums up a thinking block, done or going on', () => {
    expect(thinkingLine(3200, 184, false)).toBe('Thought for 3.2 s · 184 tokens');
    expect(thinkingLine(1449, 1, true)).toBe('Thinking… 1.4 s · 1 token');
    expect(thinkingLine(undefined, 12, false)).toBe('Thought · 12 tokens');
    expect(thinkingLine(0, 0, true)).toBe('Thinking…');
  });

  it('formats sizes', () => {
    expect(formatBytes(96_576_768)).toBe('96.6 MB');
    expect(formatBytes(4_920_000_000)).toBe('4.92 GB');
    expect(formatBytes(undefined)).toBe('—');
  });

  it('writes the metrics line with TTFT, tokens/s and the token count', () => {
    expect(metricsLine({ ttft_ms: 123.4, decode_tokens_per_s: 45.67, generated_tokens: 87 })).toBe(
      'TTFT 123 ms · 45.7 tok/s · 87 tokens',
    );
    expect(metricsLine({ ttft_ms: 1500, decode_tokens_per_s: 120, completion_tokens: 3 })).toBe(
      'TTFT 1.50 s · 120 tok/s · 3 tokens',
    );
  });

  it('adds speculative decoding\'s accepted guesses when there were any', () => {
    expect(
      metricsLine({ ttft_ms: 100, decode_tokens_per_s: 50, generated_tokens: 9, drafted_tokens: 8, accepted_tokens: 6 }),
    ).toBe('TTFT 100 ms · 50.0 tok/s · 9 tokens · 6/8 guesses accepted (75%)');
    expect(speculationLine({ drafted_tokens: 0, accepted_tokens: 0 })).toBe('');
  });

  it('computes a download fraction from either byte key', () => {
    expect(downloadFraction({ id: 1, state: 'downloading', bytes_done: 50, total_bytes: 200 })).toBe(0.25);
    expect(downloadFraction({ id: 1, state: 'downloading', downloaded_bytes: 10, total_bytes: 20 })).toBe(0.5);
    expect(downloadFraction({ id: 1, state: 'downloading', bytes_done: 10, total_bytes: null })).toBeNull();
    expect(downloadFraction({ id: 1, state: 'installed' })).toBe(1);
  });
});
