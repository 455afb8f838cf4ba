// Entry point for `export`: write gates as <outDir>/<model basename>/q{G}_dim{r}_sink{S}.<format>,
// optionally with a README.md model card at <outDir>/README.md (the hub repo root).
import * as path from 'node:path';
import type { GateSet } from '../gate/types.js';
import { writeGateSafetensors } from './gateSafetensors.js';
import { writeModelCard, type TrainSummary } from './modelCard.js';
import { gateFileName, gateFolderName, type GateFileFormat } from './naming.js';
import { writeGatePt, type WriteGatePtOptions } from './writeGatePt.js';
import { UserError } from '../util/errors.js';

export interface ExportGatesOptions {
  outDir: string;
  format: GateFileFormat;
  /** names the folder; default gates.meta.model_id */
  modelId?: string;
  /** write README.md beside the folder when true (default false) */
  card?: boolean;
  summary?: TrainSummary;
  /** hub repository named in the card's loading snippets */
  repoId?: string;
  pt?: WriteGatePtOptions;
}

export interface ExportedGates {
  /** absolute path of the gate file */
  file: string;
  /** path inside outDir, with `/` (the hub path) */
  relativePath: string;
  /** absolute path of README.md when written */
  card?: string;
}

export async function exportGates(gates: GateSet, options: ExportGatesOptions): Promise<ExportedGates> {
  const modelId = options.modelId ?? gates.meta?.model_id;
  if (!modelId) throw new UserError('export: the model id is unknown (the gate set has no meta.model_id); pass one');
  if (options.format !== 'pt' && options.format !== 'safetensors') throw new UserError(`export: unknown format "${String(options.format)}" (use pt or safetensors)`);
  const relativePath = `${gateFolderName(modelId)}/${gateFileName(gates, options.format)}`;
  const file = path.resolve(options.outDir, ...relativePath.split('/'));
  if (options.format === 'pt') await writeGatePt(file, gates, options.pt);
  else await writeGateSafetensors(file, gates);
  const result: ExportedGates = { file, relativePath };
  if (options.card) {
    result.card = path.resolve(options.outDir, 'README.md');
    await writeModelCard(result.card, gates, options.summary, { format: options.format, repoId: options.repoId, modelId });
  }
  return result;
}

export { writeGatePt, type WriteGatePtOptions } from './writeGatePt.js';
export { readGatePt, openTorchCheckpoint, type ReadGatePtOptions, type TorchCheckpoint } from './readGatePt.js';
export { writeGateSafetensors, readGateSafetensors, gateSafetensorsMetadata, metricsSummary } from './gateSafetensors.js';
export { renderModelCard, writeModelCard, type TrainSummary, type LayerSummary, type ModelCardOptions } from './modelCard.js';
export { gateFileName, gateFolderName, gateRelativePath, type GateFileFormat } from './naming.js';
export { validateGateSet, GATE_STATE_KEYS, gateStateShapes, gateStateDtypes } from '../gate/gate-tensors.js';
