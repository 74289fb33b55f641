import { type FormEvent, useState } from 'react';
import { api, ApiError, type User } from '../lib/api';

const MESSAGES: Record<string, string> = {
  username_taken: 'That username is taken. Pick another one.',
  invalid_credentials: 'Wrong username or password.',
  rate_limited: 'Too many attempts. Wait a minute and try again.',
};

export function AuthScreen({ notice, onSignedIn }: { notice?: string; onSignedIn: (user: User) => void }) {
  const [mode, setMode] = useState<'signin' | 'signup'>('signin');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const signingUp = mode === 'signup';

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const user = signingUp ? await api.signup(username.trim(), password) : await api.login(username.trim(), password);
      onSignedIn(user);
    } catch (err) {
      if (err instanceof ApiError) setError(MESSAGES[err.code] ?? err.message);
      else setError('Cannot reach the server. Check your connection.');
      setBusy(false);
    }
  }

  return (
    <main className="auth">
      <form className="card auth-card" onSubmit={submit} aria-labelledby="auth-title">
        <h1 className="brand">realtime-app</h1>
        <h2 id="auth-title">{signingUp ? 'Create your account' : 'Sign in'}</h2>
        {notice && !error && <p className="notice">{notice}</p>}
        <label>
          Username
          <input
            data-testid="auth-username"
            name="username"
            autoComplete="username"
            required
            minLength={3}
            maxLength={32}
            pattern="[a-z0-9_]{3,32}"
            title="3 to 32 lowercase letters, digits or _"
            value={username}
            onChange={(e) => setUsername(e.target.value.toLowerCase())}
          />
        </label>
        <label>
          Password
          <input
            data-testid="auth-password"
            name="password"
            type="password"
            autoComplete={signingUp ? 'new-password' : 'current-password'}
            required
            minLength={signingUp ? 8 : 1}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {signingUp && <p className="hint">At least 8 characters.</p>}
        {error && (
          <p className="error" role="alert" data-testid="auth-error">
            {error}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy} data-testid="auth-submit">
          {signingUp ? 'Sign up' : 'Sign in'}
        </button>
        <p className="switch">
          {signingUp ? 'Already have an account?' : 'New here?'}{' '}
          <button
            type="button"
            className="link"
            data-testid="auth-mode-toggle"
            onClick={() => {
              setMode(signingUp ? 'signin' : 'signup');
              setError(null);
            }}
          >
            {signingUp ? 'Sign in' : 'Create an account'}
          </button>
        </p>
      </form>
    </main>
  );
}
