// Reading a dropped ZIP in the browser, so its images can be previewed and paired before
// anything is uploaded (the server only ever receives plain image files).
// Stored and deflated entries; ZIP64 and encrypted archives are refused.
"use strict";

const ZIP_LIMITS = { entries: 2000, bytes: 1024 * 1024 * 1024 };
const IMAGE_NAME = /\.(png|jpe?g|gif|bmp|tiff?|webp)$/i;

function zipEndRecord(view) {
  for (let at = view.byteLength - 22; at >= Math.max(0, view.byteLength - 65557); at -= 1) {
    if (view.getUint32(at, true) === 0x06054b50) return at;
  }
  throw new Error("not a ZIP file (no end of central directory)");
}

async function readZip(file) {
  const tail = new DataView(await file.slice(Math.max(0, file.size - 65557)).arrayBuffer());
  const end = zipEndRecord(tail);
  const count = tail.getUint16(end + 10, true);
  const dirSize = tail.getUint32(end + 12, true);
  const dirOffset = tail.getUint32(end + 16, true);
  if (count === 0xffff || dirOffset === 0xffffffff) throw new Error("ZIP64 archives are not supported");
  if (count > ZIP_LIMITS.entries) throw new Error(`the ZIP holds ${count} entries; at most ${ZIP_LIMITS.entries}`);
  const dir = new DataView(await file.slice(dirOffset, dirOffset + dirSize).arrayBuffer());
  const decoder = new TextDecoder();
  const entries = [];
  let total = 0;
  for (let at = 0, i = 0; i < count; i += 1) {
    if (dir.getUint32(at, true) !== 0x02014b50) throw new Error("damaged ZIP central directory");
    const flags = dir.getUint16(at + 8, true);
    const method = dir.getUint16(at + 10, true);
    const packed = dir.getUint32(at + 20, true);
    const size = dir.getUint32(at + 24, true);
    const nameLength = dir.getUint16(at + 28, true);
    const skip = nameLength + dir.getUint16(at + 30, true) + dir.getUint16(at + 32, true);
    const local = dir.getUint32(at + 42, true);
    const name = decoder.decode(new Uint8Array(dir.buffer, dir.byteOffset + at + 46, nameLength));
    at += 46 + skip;
    const base = name.split("/").pop();
    if (name.endsWith("/") || name.startsWith("__MACOSX/") || base.startsWith(".") || !IMAGE_NAME.test(base)) continue;
    if (flags & 1) throw new Error(`${name} is encrypted`);
    if (method !== 0 && method !== 8) throw new Error(`${name} uses an unsupported compression`);
    total += size;
    if (total > ZIP_LIMITS.bytes) throw new Error("the ZIP unpacks to more than 1 GiB");
    entries.push({ name, method, packed, size, local });
  }
  return Promise.all(entries.map((entry) => unpack(file, entry)));
}

async function unpack(file, entry) {
  const head = new DataView(await file.slice(entry.local, entry.local + 30).arrayBuffer());
  if (head.getUint32(0, true) !== 0x04034b50) throw new Error(`damaged ZIP entry ${entry.name}`);
  const start = entry.local + 30 + head.getUint16(26, true) + head.getUint16(28, true);
  let blob = file.slice(start, start + entry.packed);
  if (entry.method === 8) {
    blob = await new Response(blob.stream().pipeThrough(new DecompressionStream("deflate-raw"))).blob();
  }
  return { path: entry.name, file: new File([blob], entry.name.split("/").pop(), { type: mimeFor(entry.name) }) };
}

function mimeFor(name) {
  const ext = name.split(".").pop().toLowerCase();
  return { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
    bmp: "image/bmp", tif: "image/tiff", tiff: "image/tiff", webp: "image/webp" }[ext] || "";
}
