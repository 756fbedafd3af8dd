import { describe, expect, it } from 'vitest';
import { aboutRows, licenseSummary } from './about';

const about = {
  version: '0.1.0',
  commit: '2804d6c0abc3',
  llama_cpp: { llama_cpp_sys_2: '0.1.161', ggml: '0.26.0' },
  licenses_url: '/api/about/licenses',
};

describe('about', () => {
  it('lists the version, the commit and the llama.cpp in this build', () => {
    expect(aboutRows(about)).toEqual([
      { label: 'Hearth', value: '0.1.0' },
      { label: 'Commit', value: '2804d6c0abc3' },
      { label: 'llama.cpp', value: "ggml 0.26.0, from llama-cpp-sys-2 0.1.161 with Hearth's CPU kernels" },
    ]);
  });

  it('says why the commit is unknown', () => {
    expect(aboutRows({ ...about, commit: 'unknown' })[1]?.value).toBe('unknown (built outside a git checkout)');
  });

  it('counts the packages the licence file lists', () => {
    const text = 'Third-party software\n\nRust crates (507)\n===\naxum 0.8.4: MIT\nUsed by: a 1, b 2\n\nWeb UI npm packages (22)\n';
    expect(licenseSummary(text)).toBe('529 third-party packages, llama.cpp and ggml, and their licences');
    expect(licenseSummary('')).toBe('Third-party licences');
  });
});
