import { dismissRejection, useRejections } from '../lib/rejections';

/** Changes the server refused (see `uploadData` in lib/powersync.ts), until dismissed. */
export function RejectionBanner() {
  const rejections = useRejections();
  if (rejections.length === 0) return null;
  return (
    <div className="banners">
      {rejections.map((r) => (
        <div key={r.id} className="banner" role="alert" data-testid="rejection-banner">
          <p>
            <strong>Not saved:</strong> {r.what}. <span className="reason">{r.reason}</span>
          </p>
          <button
            className="ghost"
            aria-label="Dismiss"
            data-testid="rejection-dismiss"
            onClick={() => dismissRejection(r.id)}
          >
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
