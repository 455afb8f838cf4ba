// A small library for PyTorch's checkpoint files, with no knowledge of gates (as
// model/safetensors/ is for safetensors): the zip container, an allow-list pickle reader
// (it never calls anything outside its list), a protocol-2 pickle writer, and torch's pickled
// tensors, storages and numpy arrays.
export { openTorchCheckpoint, type CheckpointLimits, type TorchCheckpoint } from './read-checkpoint.js';
export { unpickle, UnpickleError, type PyCallable, type PyBuildable, type UnpickleOptions } from './pickle-reader.js';
export { pickle, py, type PyValue } from './pickle-writer.js';
export { contiguousStrides, float64ArrayPickle, orderedDictPickle, tensorPickle, torchCheckpointGlobals, torchPersistentLoad, NdArray, StorageRef, StorageType, TensorRef, TORCH_STORAGE } from './torch-pickle.js';
export { StoredZipWriter, type ZipWriterOptions } from './zip-writer.js';
export { ZipReader, type ZipEntry } from './zip-reader.js';
