// Public surface of the data layer: corpus sources, the document recipe, chat templates.
export type {
  Corpus,
  CorpusDescription,
  Document,
  DocumentStreamOptions,
  SkipCounts,
  SkippedDocument,
  SkipReason,
  TextTokenizer,
} from './types.js';
export { SKIP_REASONS, emptySkipCounts } from './types.js';
export { openCorpus, corpusFromDocuments, DEFAULT_TEXT_FIELD, DEFAULT_TOKEN_COUNT_FIELD } from './corpus.js';
export type { OpenCorpusOptions } from './corpus.js';
export { sotuCorpus, sotuDocumentIds, sotuPackageDir, SOTU_PACKAGE } from './sotu.js';
export { DEFAULT_HUB_DATA, hubCorpus, isHubSpec, parseHubSpec } from './hub.js';
export type { HubDataRef, HubFileResolver } from './hub.js';
export { fileDocuments, formatOf, listCorpusFiles, localCorpus } from './files.js';
export type { FieldOptions, FileFormat } from './files.js';
export { parquetDocuments } from './parquet.js';
export { jsonDocuments } from './jsonl.js';
export { readTextDocument } from './txt.js';
export { admitDocument, compareCodeUnits, decodeUtf8Strict, pythonStrip } from './text.js';
export {
  DEFAULT_RECIPE,
  collectContexts,
  contextId,
  resolveRecipeOptions,
  runRecipe,
} from './recipe.js';
export { balancedParts } from './balance-parts.js';
export type {
  ContextPlanEntry,
  ContextRef,
  ContextSet,
  RecipeOptions,
  RecipeRun,
  RecipeRunOptions,
  RecipeSummary,
  ScoringContext,
  SetStop,
  Shard,
} from './recipe.js';
export {
  DEFAULT_TEMPLATES_FILE,
  loadTemplateConfig,
  reconstructionPrompts,
  templateFor,
} from './templates.js';
export type {
  ChatTemplate,
  ReconstructionPrompts,
  TemplateConfig,
  TemplateEntry,
  TemplateMatchRule,
  TemplateOptions,
  TemplateQuery,
} from './templates.js';
