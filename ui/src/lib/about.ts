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

/** The licence text's first line, to show it loaded; the whole text is long. */
export function licenseSummary(text: string): string {
  const packages = text.match(/^[^\s:]+ \S+: .+$/gm)?.length ?? 0;
  return packages > 0 ? `${packages} third-party packages and their licences` : 'Third-party licences';
}
