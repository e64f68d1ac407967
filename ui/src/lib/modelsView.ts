// Text for the Models screen: fit badges and download progress.
import { formatBytes, formatSeconds } from './format';
import type { DownloadProgress, Fit, PartialDownload } from './types';

export function fitLabel(fit: Fit | null): string {
  switch (fit) {
    case 'fits':
      return 'fits';
    case 'tight':
      return 'tight';
    case 'wont_fit':
      return "won't fit";
    default:
      return '—';
  }
}

/** "312 MB of 1.1 GB · 24.5 MB/s · 33 s left" (total and ETA when the server says). */
export function progressText(p: DownloadProgress): string {
  const done = p.bytes_done > 0 ? formatBytes(p.bytes_done) : '0 B';
  const parts = [p.total ? `${done} of ${formatBytes(p.total)}` : done];
  if (p.bytes_per_sec > 0) parts.push(`${formatBytes(p.bytes_per_sec)}/s`);
  if (p.eta_secs !== null && Number.isFinite(p.eta_secs) && !p.done) parts.push(`${formatSeconds(p.eta_secs * 1000)} left`);
  if (p.done) parts.push('verifying…');
  else if (p.bytes_done === 0 && p.bytes_per_sec === 0) parts.push('connecting…');
  if (p.attempt > 0) parts.push(`resumed (try ${p.attempt + 1})`);
  return parts.join(' · ');
}

/** "312 MB of 1.1 GB (28%) · from huggingface.co · checked against your sha256". */
export function partialText(p: PartialDownload): string {
  const done = formatBytes(p.bytes_done);
  const parts = [p.total ? `${done} of ${formatBytes(p.total)} (${Math.floor((p.bytes_done / p.total) * 100)}%)` : done];
  if (p.url) {
    try {
      parts.push(`from ${new URL(p.url).host}`);
    } catch {
      parts.push(`from ${p.url}`);
    }
  } else {
    parts.push('its address was not recorded: delete it and download again');
  }
  if (p.has_sha256) parts.push('checked against your sha256 when done');
  if (p.in_progress) parts.push('downloading now');
  return parts.join(' · ');
}
