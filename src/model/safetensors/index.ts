// safetensors reading and writing. No maintained npm package exists (the "safetensors" package is a stub).
export { SAFETENSORS_DTYPES, elementCount, isSafetensorsDType, safetensorsBytes, type SafetensorsDType } from './dtype.js';
export { readSafetensorsHeader, MAX_HEADER_BYTES, type SafetensorsHeader, type HeaderTensor } from './header.js';
export { openSafetensors, rawToF32, SINGLE_FILE, INDEX_FILE, type SafetensorsIndex, type TensorInfo } from './open.js';
export { writeSafetensors, type TensorToWrite } from './write.js';
