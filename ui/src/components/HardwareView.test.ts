import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import HardwareView from './HardwareView.svelte';
import { app } from '../lib/app.svelte';

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
}

const failedProbe = {
  probe: { cpu: { logical_cores: 2 }, memory: { total_bytes: 8e9, available_bytes: 4e9 }, gpus: [] },
  loaded: [],
  probe_error: 'the hardware probe did not finish within 60s and was stopped',
};

describe('HardwareView', () => {
  let component: ReturnType<typeof mount> | null = null;

  afterEach(() => {
    if (component) unmount(component);
    component = null;
    vi.unstubAllGlobals();
  });

  it('says why the probe failed instead of showing an empty report', async () => {
    vi.stubGlobal('fetch', async () => json(failedProbe));
    app.system = failedProbe;
    component = mount(HardwareView, { target: document.body });
    flushSync();
    const notice = document.querySelector('[data-testid="probe-error"]');
    expect(notice?.textContent).toContain('did not finish within 60s');
  });

  it('shows the backends: the CPU variant, a GPU backend that failed and why', async () => {
    const report = {
      probe: {
        cpu: { logical_cores: 16 },
        memory: { total_bytes: 32e9, available_bytes: 20e9 },
        gpus: [
          { name: 'NVIDIA H200', backend: 'CUDA', device_type: 'gpu', total_bytes: 1, free_bytes: 1, used: true },
          { name: 'NVIDIA H200', backend: 'Vulkan', device_type: 'gpu', total_bytes: 1, free_bytes: 1, used: false },
        ],
        backends: {
          build: 'dynamic',
          choice: 'auto',
          cpu_variant: 'haswell',
          libraries: [
            { file_name: 'libggml-cpu-haswell.so', backend: 'cpu', variant: 'haswell', state: 'loaded' },
            { file_name: 'libggml-cpu-zen4.so', backend: 'cpu', variant: 'zen4', state: 'unsupported' },
            { file_name: 'libggml-vulkan.so', backend: 'vulkan', state: 'failed', reason: 'libvulkan.so.1: cannot open shared object file' },
          ],
        },
      },
      loaded: [],
    };
    vi.stubGlobal('fetch', async () => json(report));
    app.system = report as typeof app.system;
    component = mount(HardwareView, { target: document.body });
    flushSync();
    const section = document.querySelector('[data-testid="hardware-backends"]');
    expect(section?.textContent).toContain('haswell');
    expect(section?.querySelector('[data-state="failed"]')?.textContent).toContain('libvulkan.so.1: cannot open');
    // Passed-over CPU variants are not listed one by one.
    expect(section?.textContent).not.toContain('zen4');
    expect(document.querySelector('[data-testid="hardware-gpus"]')?.textContent).toContain('not used');
  });

  it("shows the loaded model's speculative decoding: the draft's id, n-gram lookup, off", async () => {
    const plan = { architecture: 'llama', n_ctx: 4096, kv_cache_type: 'f16', memory_bytes: 2e8 };
    const report = {
      probe: { cpu: { logical_cores: 2 }, memory: { total_bytes: 8e9, available_bytes: 4e9 }, gpus: [] },
      loaded: [
        { id: 'smollm2-1.7b-instruct', state: 'loaded', plan: { ...plan, speculative: 'draft', draft_model: 'smollm2-135m-instruct' } },
        { id: 'rewriter', state: 'loaded', plan: { ...plan, speculative: 'ngram', draft_model: null } },
        { id: 'plain', state: 'loaded', plan: { ...plan, speculative: 'off', draft_model: null } },
      ],
    };
    vi.stubGlobal('fetch', async () => json(report));
    app.system = report as typeof app.system;
    component = mount(HardwareView, { target: document.body });
    flushSync();
    const shown = [...document.querySelectorAll('[data-testid="plan-speculative"]')].map((cell) => cell.textContent);
    expect(shown).toEqual(['draft model smollm2-135m-instruct', 'n-gram lookup', 'off']);
    expect(document.querySelector('[data-testid="active-plan"]')?.textContent).toContain('Speculative decoding');
  });

  it('shows how much of the KV cache each loaded model keeps in RAM, or that it keeps none', async () => {
    const plan = { architecture: 'llama', n_ctx: 4096, kv_cache_type: 'f16' };
    const report = {
      probe: { cpu: { logical_cores: 2 }, memory: { total_bytes: 8e9, available_bytes: 4e9 }, gpus: [] },
      loaded: [
        { id: 'roomy', state: 'loaded', plan: { ...plan, kv_host_budget_bytes: 1.5e9 } },
        { id: 'tight', state: 'loaded', plan: { ...plan, kv_host_budget_bytes: 0 } },
        { id: 'older-server', state: 'loaded', plan },
      ],
    };
    vi.stubGlobal('fetch', async () => json(report));
    app.system = report as typeof app.system;
    component = mount(HardwareView, { target: document.body });
    flushSync();
    const shown = [...document.querySelectorAll('[data-testid="plan-kv-host"]')].map((cell) => cell.textContent);
    expect(shown).toEqual(['up to 1.50 GB, then on disk', 'none (memory is short): on disk only']);
  });
});
