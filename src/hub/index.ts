export { hubEnv, type HubEnv } from './env.js';
export { resolveModel, MODEL_REQUIRED_FILES, MODEL_OPTIONAL_FILES, type ResolveModelOptions, type ResolvedModel } from './resolve-model.js';
export { resolveDatasetFile, type ResolveDatasetFileOptions, type ResolvedDatasetFile } from './resolve-dataset-file.js';
export { parseHubDataRef, type HubDataRef } from './parse-hub-data-ref.js';
export { uploadFolder, type UploadFolderOptions, type UploadResult } from './upload-folder.js';
export { repoCacheFolder, snapshotDir, cachedCommit, type HubRepo, type RepoType } from './repo-cache.js';
