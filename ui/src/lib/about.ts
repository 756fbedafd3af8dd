import type { About } from './types';

/** One row of the About view. */
export interface AboutRow {
  label: string;
  value: string;
}

/** What the About view lists: Hearth's version, the commit it was built from, its llama.cpp. */
export function aboutRows(about: About): AboutRow[] {
  const commit =
    about.commit && about.commit !== 'unknown' ? about.commit : 'unknown (built outside a git checkout)';
  return [
    { label: 'Hearth', value: about.version },
    { label: 'Commit', value: commit },
    {
      label: 'llama.cpp',
      value: `ggml ${about.llama_cpp.ggml}, from llama-cpp-sys-2 ${about.llama_cpp.llama_cpp_sys_2} with Hearth's CPU kernels`,
    },
  ];
}

/** What the licence file covers, from its section headings (`Rust crates (507)`, …). */
export function licenseSummary(text: string): string {
  let packages = 0;
  for (const match of text.matchAll(/^(?:Rust crates|Web UI npm packages) \((\d+)\)$/gm)) {
    packages += Number(match[1]);
  }
  return packages > 0
    ? `${packages} third-party packages, llama.cpp and ggml, and their licences`
    : 'Third-party licences';
}
