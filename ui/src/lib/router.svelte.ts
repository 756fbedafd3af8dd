/** Client-side routes on the page's path (`hearth serve` answers them with index.html). */

export type Route =
  | { name: 'chat'; id: number | null }
  | { name: 'models' }
  | { name: 'hardware' }
  | { name: 'settings' };

export function parseRoute(path: string): Route {
  const clean = path.replace(/\/+$/, '') || '/';
  const chat = /^\/chat\/(\d+)$/.exec(clean);
  if (chat?.[1]) return { name: 'chat', id: Number(chat[1]) };
  switch (clean) {
    case '/models':
      return { name: 'models' };
    case '/hardware':
      return { name: 'hardware' };
    case '/settings':
      return { name: 'settings' };
    default:
      return { name: 'chat', id: null };
  }
}

export function routePath(route: Route): string {
  switch (route.name) {
    case 'chat':
      return route.id === null ? '/' : `/chat/${route.id}`;
    default:
      return `/${route.name}`;
  }
}

class Router {
  route = $state<Route>(parseRoute(typeof location === 'undefined' ? '/' : location.pathname));

  constructor() {
    if (typeof window !== 'undefined') {
      window.addEventListener('popstate', () => {
        this.route = parseRoute(location.pathname);
      });
    }
  }

  go(route: Route, replace = false): void {
    const path = routePath(route);
    if (typeof history !== 'undefined' && location.pathname !== path) {
      try {
        if (replace) history.replaceState(null, '', path);
        else history.pushState(null, '', path);
      } catch {
        // A host that forbids history changes (a file: page): the route still changes.
      }
    }
    this.route = route;
  }
}

export const router = new Router();
