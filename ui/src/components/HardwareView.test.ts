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
});
