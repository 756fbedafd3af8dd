// A small client of Hearth's HTTP API for setting up and checking what the UI shows.
const REQUEST_TIMEOUT = 30_000;

/** The server's API key as a header, when it has one. */
export function authorization(server) {
  return server.apiKey ? { Authorization: `Bearer ${server.apiKey}` } : {};
}

export async function api(server, method, path, body) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...authorization(server), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: callers see `text`.
  }
  return { status: response.status, json, text, headers: response.headers };
}

/** Like `api`, but throws unless the status is `expected`; returns the JSON body. */
export async function apiOk(server, method, path, body, expected = [200, 201, 202, 204]) {
  const result = await api(server, method, path, body);
  const allowed = Array.isArray(expected) ? expected : [expected];
  if (!allowed.includes(result.status)) {
    throw new Error(`${method} ${path} answered ${result.status}: ${result.text}`);
  }
  return result.json;
}

/** Greedy decoding: the same prompt gives the same answer on every run. */
export const GREEDY = { temperature: 0, seed: 1 };

export async function createConversation(server, { title, settings = {}, system_prompt } = {}) {
  return apiOk(server, 'POST', '/api/conversations', {
    title,
    settings: { ...GREEDY, ...settings },
    ...(system_prompt === undefined ? {} : { system_prompt }),
  });
}

export async function getConversation(server, id) {
  return apiOk(server, 'GET', `/api/conversations/${id}`);
}

/**
 * POSTs to an endpoint that answers with the chat SSE stream and reads its `data:` events.
 * `stopWhen(events)` returning true aborts the request (as the UI's Stop does).
 * Resolves `{ events, text, aborted }` within `timeout`.
 */
export async function streamEvents(server, path, body, { stopWhen, timeout = 120_000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no end of ${path} in ${timeout} ms`)), timeout);
  const events = [];
  let aborted = false;
  try {
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { ...authorization(server), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (response.status !== 200) {
      throw new Error(`POST ${path} answered ${response.status}: ${await response.text()}`);
    }
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).trimEnd();
        buffer = buffer.slice(end + 1);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') continue;
        events.push(JSON.parse(data));
      }
      if (stopWhen?.(events)) {
        aborted = true;
        controller.abort();
        break;
      }
    }
  } catch (error) {
    if (!aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
  const text = events.filter((event) => event.type === 'token').map((event) => event.text).join('');
  return { events, text, aborted };
}

export async function sendMessage(server, conversationId, content, options) {
  return streamEvents(server, `/api/conversations/${conversationId}/messages`, { content }, options);
}
