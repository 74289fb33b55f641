// The app's own HTTP API (the Rust process in ../server): accounts and user lookup. Every call is
// same-origin and carries the HttpOnly session cookie.

export interface User {
  id: string;
  username: string;
}

/** An error answer of the API: `{"error":{"code","message"}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export async function readApiError(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: 'include',
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await readApiError(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const api = {
  signup: (username: string, password: string) =>
    request<{ user: User }>('POST', '/api/auth/signup', { username, password }).then((r) => r.user),
  login: (username: string, password: string) =>
    request<{ user: User }>('POST', '/api/auth/login', { username, password }).then((r) => r.user),
  logout: () => request<void>('POST', '/api/auth/logout', {}),
  /** The signed-in user, or null when there is no session. Throws on network errors. */
  me: async (): Promise<User | null> => {
    try {
      return (await request<{ user: User }>('GET', '/api/auth/me')).user;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return null;
      throw e;
    }
  },
  /** Looks a user up by username (to share a list); null when there is no such user. */
  userByUsername: async (username: string): Promise<User | null> => {
    try {
      return (await request<{ user: User }>('GET', `/api/users/by-username/${encodeURIComponent(username)}`)).user;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  },
};
