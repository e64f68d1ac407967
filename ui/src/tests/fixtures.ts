// Library entries for the UI tests: a model as the Models screen and the pickers get it.
import type { ModelInfo } from '../lib/types';

const modelInfo = (id: string, name: string, p: Partial<ModelInfo> = {}): ModelInfo => ({
  id, name, path: `/m/${name}.gguf`, size_bytes: 1e8, architecture: 'llama', quantization: 'Q4_1', parameter_count: 1.35e8,
  context_length: 8192, has_chat_template: true, reasoning_format: null, error: null, gpu_layers: null, ...p,
});

/** Two usable models and one the library could not read. */
export const library = (): ModelInfo[] => [
  modelInfo('s', 'smol'),
  modelInfo('g', 'gemma'),
  modelInfo('x', 'broken', { error: 'truncated file' }),
];
