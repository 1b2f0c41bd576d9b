"""Safe image loading: formats, orientation, transparency, and every way a file can be bad."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from app.cards import CardError, generate_sheets, get_layout
from app.cards.placement import compose, orientation_matrix
from tests.cards.helpers import PALETTE, WHITE, quadrant_image, render

LETTER = get_layout("letter", "standard")
QUADS = (PALETTE[0], PALETTE[10], PALETTE[20], PALETTE[30])


def slot0(arr, fx, fy):
    x, y = LETTER.slot_origin(0)
    return tuple(int(v) for v in arr[int(y + LETTER.card_h * fy), int(x + LETTER.card_w * fx)])


def quadrants(arr):
    return [slot0(arr, fx, fy) for fy in (0.25, 0.75) for fx in (0.25, 0.75)]


def one_card(make_deck, tmp_path, name, content, **options):
    root = make_deck({"fronts": {name: content}})
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True, **options)
    return out, result


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


# --------------------------------------------------------------------------- orientation

@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matrix_matches_exif_transpose(orientation):
    raw = np.arange(5 * 3).reshape(3, 5)      # 5 wide, 3 tall, every pixel unique
    image = Image.fromarray(raw.astype(np.uint8), "L")
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(image))
    matrix = compose(orientation_matrix(orientation, 5, 3), (1, 0, 0, 1, 0, 0))
    a, b, c, d, e, f = matrix
    for v in range(3):
        for u in range(5):
            x, y = a * (u + .5) + c * (v + .5) + e, b * (u + .5) + d * (v + .5) + f
            assert upright[int(y), int(x)] == raw[v, u]


@pytest.mark.parametrize("orientation", [3, 6, 8, 5])
def test_jpeg_exif_orientation_is_honoured_without_reencoding(make_deck, tmp_path, orientation):
    stored = quadrant_image(QUADS, size=(64, 96))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    out, _ = one_card(make_deck, tmp_path, "photo.jpg", data)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    expected = [tuple(int(v) for v in upright.getpixel((int(upright.width * fx), int(upright.height * fy))))
                for fy in (0.25, 0.75) for fx in (0.25, 0.75)]
    got = quadrants(render(out, 0))
    for want, have in zip(expected, got):
        assert max(abs(w - h) for w, h in zip(want, have)) <= 12, (expected, got)
    assert out.read_bytes().count(data) == 1           # the JPEG went in untouched


def test_png_exif_orientation(make_deck, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encoded(quadrant_image(QUADS), "PNG", exif=exif.tobytes())
    out, _ = one_card(make_deck, tmp_path, "turned.png", data)
    assert quadrants(render(out, 0)) == [QUADS[3], QUADS[2], QUADS[1], QUADS[0]]


# --------------------------------------------------------------------------- formats and modes

def test_alpha_is_composited_on_white(make_deck, tmp_path):
    arr = np.zeros((56, 40, 4), np.uint8)
    arr[..., :3] = PALETTE[5]
    arr[:28, :, 3] = 255                          # top half opaque, bottom half transparent
    out, _ = one_card(make_deck, tmp_path, "alpha.png", Image.fromarray(arr, "RGBA"))
    arr = render(out, 0)
    assert slot0(arr, 0.5, 0.25) == PALETTE[5]
    assert slot0(arr, 0.5, 0.75) == WHITE


def test_gif_uses_the_first_frame_and_its_transparency(make_deck, tmp_path):
    first = Image.new("P", (40, 56), 0)
    first.putpalette([*PALETTE[7], *PALETTE[8]] + [0] * 762)
    first.paste(1, (0, 28, 40, 56))
    second = Image.new("P", (40, 56), 1)
    second.putpalette([*PALETTE[7], *PALETTE[8]] + [0] * 762)
    data = encoded(first, "GIF", save_all=True, append_images=[second], transparency=1)
    out, _ = one_card(make_deck, tmp_path, "anim.gif", data)
    arr = render(out, 0)
    assert slot0(arr, 0.5, 0.25) == PALETTE[7]
    assert slot0(arr, 0.5, 0.75) == WHITE


def test_sixteen_bit_grey(make_deck, tmp_path):
    grey = Image.fromarray(np.full((56, 40), 40000, np.uint16))
    assert grey.mode.startswith("I")
    out, _ = one_card(make_deck, tmp_path, "deep.png", encoded(grey, "PNG"))
    value = slot0(render(out, 0), 0.5, 0.5)
    assert value[0] == value[1] == value[2] and abs(value[0] - 40000 / 257) <= 2


def test_cmyk_jpeg(make_deck, tmp_path):
    cmyk = Image.new("CMYK", (40, 56), (0, 255, 255, 0))     # red
    out, _ = one_card(make_deck, tmp_path, "print.jpg", encoded(cmyk, "JPEG", quality=95))
    r, g, b = slot0(render(out, 0), 0.5, 0.5)
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("fmt, name", [("TIFF", "c.tif"), ("BMP", "c.bmp"), ("WEBP", "c.webp"),
                                       ("PNG", "c.png")])
def test_formats(make_deck, tmp_path, fmt, name):
    params = {"lossless": True} if fmt == "WEBP" else {}
    out, _ = one_card(make_deck, tmp_path, name, encoded(Image.new("RGB", (40, 56), PALETTE[3]), fmt, **params))
    assert slot0(render(out, 0), 0.5, 0.5) == PALETTE[3]


def test_palette_png_and_grey_png(make_deck, tmp_path):
    root = make_deck({"fronts": {
        "a.png": Image.new("RGB", (40, 56), PALETTE[4]).convert("P", palette=Image.Palette.ADAPTIVE),
        "b.png": Image.new("L", (40, 56), 77),
        "c.png": Image.new("1", (40, 56), 1),
    }})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True)
    arr = render(out, 0)
    colours = [tuple(int(v) for v in arr[LETTER.slot_origin(s)[1] + 500, LETTER.slot_origin(s)[0] + 300])
               for s in range(3)]
    assert colours == [PALETTE[4], (77, 77, 77), WHITE]


# --------------------------------------------------------------------------- bad input

def png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield pos, length, kind
        pos += 12 + length


def with_corrupt_idat(data: bytes) -> bytes:
    for pos, length, kind in png_chunks(data):
        if kind == b"IDAT":
            broken = bytearray(data)
            broken[pos + 8 + length // 2] ^= 0xFF
            return bytes(broken)
    raise AssertionError


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_idat(data: bytes, payload: bytes) -> bytes:
    """`data` with its IDAT chunks replaced by one IDAT of `payload`, every CRC valid."""
    chunks = [(pos, length, kind) for pos, length, kind in png_chunks(data)]
    head = data[:chunks[0][0]] + b"".join(data[pos:pos + 12 + length] for pos, length, kind in chunks
                                         if kind not in (b"IDAT", b"IEND"))
    return head + png_chunk(b"IDAT", payload) + png_chunk(b"IEND", b"")


def idat_payload(data: bytes) -> bytes:
    return b"".join(data[pos + 8:pos + 8 + length] for pos, length, kind in png_chunks(data) if kind == b"IDAT")


def huge_header_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims an enormous image (a decompression bomb's shape)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


PNG = encoded(Image.new("RGB", (40, 56), PALETTE[1]), "PNG")
NOISY_JPEG = encoded(Image.fromarray(np.random.default_rng(3).integers(0, 256, (200, 150, 3), dtype=np.uint8)),
                     "JPEG", quality=90)
NOISY_PNG = encoded(Image.fromarray(np.random.default_rng(4).integers(0, 256, (200, 150, 3), dtype=np.uint8)),
                    "PNG")


def flipped(payload: bytes, at: float) -> bytes:
    broken = bytearray(payload)
    broken[int(len(broken) * at)] ^= 0x55
    return bytes(broken)


# Pass-through PNGs (8-bit RGB, no alpha) whose chunk CRCs are all valid but whose
# deflate data is not sound: their IDAT would go into the PDF unchanged.
_RAW = idat_payload(NOISY_PNG)
SOUND_CRC_BAD_DEFLATE = {
    "flipped.png": with_idat(NOISY_PNG, flipped(_RAW, 0.5)),
    "bad-checksum.png": with_idat(NOISY_PNG, _RAW[:-4] + bytes(4)),
    "short.png": with_idat(NOISY_PNG, zlib.compress(zlib.decompress(_RAW)[:-300])),
    "long.png": with_idat(NOISY_PNG, zlib.compress(zlib.decompress(_RAW) + b"\0" * 451)),
    "trailing.png": with_idat(NOISY_PNG, _RAW + b"junk after the stream"),
}


@pytest.mark.parametrize("name", SOUND_CRC_BAD_DEFLATE)
def test_pass_through_png_with_valid_crcs_but_broken_deflate_is_refused(make_deck, tmp_path, name):
    content = SOUND_CRC_BAD_DEFLATE[name]
    Image.open(io.BytesIO(content)).verify()          # every CRC is fine
    root = make_deck({"fronts": {"good.png": NOISY_PNG, name: content}})
    with pytest.raises(CardError, match="damaged") as info:
        generate_sheets(front_dir=root / "fronts", output=tmp_path / "out.pdf", only_fronts=True)
    assert name in str(info.value)
    assert not (tmp_path / "out.pdf").exists()


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"just some text", "not a supported image"),
    ("empty.png", b"", "not a supported image"),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "bad.png|fake.png"),
    ("cut.png", NOISY_PNG[: len(NOISY_PNG) // 2], "cut.png"),
    ("cut.jpg", NOISY_JPEG[: len(NOISY_JPEG) // 2], "cut.jpg"),
    ("crc.png", with_corrupt_idat(NOISY_PNG), "crc.png"),
    ("bomb.png", huge_header_png(60000, 60000), "too large"),
    ("doc.pdf", b"%PDF-1.4\n%%EOF\n", "not a supported image"),
    ("vector.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a supported image"),
])
def test_bad_files_are_card_errors_naming_the_file(make_deck, tmp_path, name, content, message):
    root = make_deck({"fronts": {"good.png": PNG, name: content}})
    with pytest.raises(CardError, match=message) as info:
        generate_sheets(front_dir=root / "fronts", output=tmp_path / "out.pdf", only_fronts=True)
    assert str(info.value).startswith(f"{name}: ")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.pdf").exists()


def test_pixel_cap_comes_from_the_parameter(make_deck, tmp_path):
    root = make_deck({"fronts": {"big.png": Image.new("RGB", (200, 200))}})
    with pytest.raises(CardError, match="too large"):
        generate_sheets(front_dir=root / "fronts", output=tmp_path / "o.pdf", max_image_pixels=10_000)
    assert Image.MAX_IMAGE_PIXELS == 89478485 or Image.MAX_IMAGE_PIXELS is None  # untouched global
    generate_sheets(front_dir=root / "fronts", output=tmp_path / "o.pdf", max_image_pixels=40_000)


def test_bad_back_and_double_sided_images_are_named(make_deck, tmp_path):
    root = make_deck({"fronts": {"a.png": PNG}, "backs": {"back.png": b"nope"},
                      "double": {"a.png": b"nope"}})
    with pytest.raises(CardError, match="back.png"):
        generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=tmp_path / "o.pdf")
    with pytest.raises(CardError, match="double-sided back a.png"):
        generate_sheets(front_dir=root / "fronts", double_sided_dir=root / "double", output=tmp_path / "o.pdf")
