// Who is signed in on this browser. The server's session cookie is the authority; the last known
// user is also remembered locally so the app (and its local data) opens while offline.
import type { User } from './api';

const KEY = 'realtime-app.user';

export function rememberedUser(): User | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const user = JSON.parse(raw) as Partial<User>;
    return typeof user.id === 'string' && typeof user.username === 'string' ? { id: user.id, username: user.username } : null;
  } catch {
    return null;
  }
}

export function rememberUser(user: User | null) {
  if (user) localStorage.setItem(KEY, JSON.stringify(user));
  else localStorage.removeItem(KEY);
}
