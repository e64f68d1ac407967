// Text for the Models screen: fit badges, where the layers go, and download progress.
import { formatBytes, formatSeconds } from './format';
import type { DownloadProgress, Fit, PartialDownload, PlacementEstimate } from './types';

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

/**
 * Where the layers go before loading, RAM apart from VRAM (the core's estimate, the same
 * line `conclave models info` prints): "RAM 1.2 GB · VRAM 3.4 GB (CUDA0: 23/28 layers +
 * output)", "RAM 180 MB · no GPU: all 30 layers on the CPU". Layers are the repeating
 * ones; llama.cpp offloads the output layer first.
 */
export function placementText(p: PlacementEstimate): string {
  const n = p.layer_count;
  const parts = [`RAM ${formatBytes(p.ram_bytes)}`];
  if (!p.has_gpu) {
    parts.push(`no GPU: all ${n} layers on the CPU`);
  } else if (p.gpu_layers === 0) {
    const why =
      p.gpu_layers_setting.mode === 'count'
        ? 'GPU layers set to 0'
        : `too little free VRAM (${formatBytes(Math.max(0, ...p.devices.map((d) => d.free_bytes)))} free on ${p.devices.map((d) => d.name).join(', ')})`;
    parts.push(`${why}: all ${n} layers on the CPU`);
  } else {
    const used = p.devices
      .filter((d) => d.layers > 0 || d.output)
      .map((d) => `${d.name}: ${d.layers}/${n} layers${d.output ? ' + output' : ''}`);
    parts.push(`VRAM ${formatBytes(p.vram_bytes)} (${used.join(', ')})`);
  }
  if (p.rpc_servers.length > 0) parts.push(`remote devices ${p.rpc_servers.join(', ')}: their share is decided at load`);
  return parts.join(' · ');
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
