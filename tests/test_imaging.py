import io
import struct
import zlib

from django.test import SimpleTestCase, override_settings
from PIL import Image, ImageFile

from projects.imaging import ImageRejected, decode_image, load_stored_image
from projects.storage import write_file
from tests.base import real_photos


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def noisy_jpeg(size=(400, 300)) -> bytes:
    return encode(Image.effect_noise(size, 60).convert("RGB"), "JPEG", quality=90)


class DecodeImageTests(SimpleTestCase):
    def test_it_decodes_a_real_photo(self):
        data = real_photos("ants", 1)[0].read_bytes()
        decoded = decode_image(data)
        self.assertEqual(decoded.format, "JPEG")
        self.assertEqual(decoded.image.mode, "RGB")
        self.assertEqual(decoded.image.size, (decoded.width, decoded.height))
        self.assertEqual(decoded.notes, [])

    def test_it_keeps_truncated_images_refused_globally(self):
        self.assertFalse(ImageFile.LOAD_TRUNCATED_IMAGES)

    def test_it_converts_cmyk_jpeg_to_rgb(self):
        data = encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG")
        decoded = decode_image(data)
        self.assertEqual(decoded.image.mode, "RGB")
        red, green, blue = decoded.image.getpixel((10, 5))
        self.assertGreater(red, 200)
        self.assertLess(green, 60)
        self.assertLess(blue, 60)
        self.assertIn("CMYK colours converted to RGB", decoded.notes)

    def test_it_applies_exif_orientation(self):
        # Stored 40 wide and 20 high with a red left half; orientation 6 means
        # "turn 90° clockwise to view", so the red half ends up on top.
        image = Image.new("RGB", (40, 20), (0, 0, 255))
        image.paste((255, 0, 0), (0, 0, 20, 20))
        exif = Image.Exif()
        exif[0x0112] = 6
        data = encode(image, "JPEG", exif=exif.tobytes(), quality=95)

        decoded = decode_image(data)
        self.assertEqual((decoded.width, decoded.height), (20, 40))
        self.assertEqual(decoded.image.size, (20, 40))
        top = decoded.image.getpixel((10, 5))
        bottom = decoded.image.getpixel((10, 35))
        self.assertGreater(top[0], 200)
        self.assertLess(top[2], 60)
        self.assertGreater(bottom[2], 200)
        self.assertLess(bottom[0], 60)
        self.assertIn("turned upright using its EXIF orientation", decoded.notes)

    def test_it_applies_exif_orientation_in_draft_mode(self):
        image = Image.effect_noise((1600, 800), 50).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = 6
        data = encode(image, "JPEG", exif=exif.tobytes())

        decoded = decode_image(data, draft_size=(200, 200))
        self.assertEqual((decoded.width, decoded.height), (800, 1600))
        self.assertEqual(decoded.image.size, (200, 400))

    def test_it_decodes_jpeg_at_reduced_scale_in_draft_mode(self):
        decoded = decode_image(noisy_jpeg((1600, 1200)), draft_size=(256, 256))
        self.assertEqual((decoded.width, decoded.height), (1600, 1200))
        self.assertEqual(decoded.image.size, (400, 300))

    def test_it_scales_16_bit_grayscale_to_8_bit(self):
        image = Image.new("I;16", (3, 1))
        image.putpixel((0, 0), 65535)
        image.putpixel((1, 0), 32768)
        image.putpixel((2, 0), 0)
        decoded = decode_image(encode(image, "PNG"))

        self.assertEqual(decoded.image.mode, "RGB")
        self.assertEqual(decoded.image.getpixel((0, 0)), (255, 255, 255))
        self.assertIn(decoded.image.getpixel((1, 0))[0], (127, 128))
        self.assertEqual(decoded.image.getpixel((2, 0)), (0, 0, 0))
        self.assertIn("16-bit image scaled to 8 bits", decoded.notes)

    def test_it_composites_transparent_pixels_on_white(self):
        image = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
        image.putpixel((1, 0), (0, 0, 0, 0))
        decoded = decode_image(encode(image, "PNG"))
        self.assertEqual(decoded.image.getpixel((0, 0)), (255, 0, 0))
        self.assertEqual(decoded.image.getpixel((1, 0)), (255, 255, 255))
        self.assertIn("transparent areas filled with white", decoded.notes)

    def test_it_composites_grayscale_with_alpha_on_white(self):
        image = Image.new("LA", (2, 1), (0, 255))
        image.putpixel((1, 0), (0, 0))
        decoded = decode_image(encode(image, "PNG"))
        self.assertEqual(decoded.image.getpixel((0, 0)), (0, 0, 0))
        self.assertEqual(decoded.image.getpixel((1, 0)), (255, 255, 255))

    def test_it_composites_a_palette_with_transparency_on_white(self):
        image = Image.new("P", (2, 1))
        image.putpalette([0, 0, 255, 0, 0, 0] + [0] * 762)
        image.putpixel((0, 0), 0)
        image.putpixel((1, 0), 1)
        data = encode(image, "PNG", transparency=1)

        decoded = decode_image(data)
        self.assertEqual(decoded.image.getpixel((0, 0)), (0, 0, 255))
        self.assertEqual(decoded.image.getpixel((1, 0)), (255, 255, 255))

    def test_it_converts_a_palette_image_and_notes_few_colours(self):
        image = Image.new("RGB", (30, 30), (10, 200, 10))
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        decoded = decode_image(encode(image, "GIF"))
        self.assertEqual(decoded.format, "GIF")
        self.assertEqual(decoded.image.getpixel((5, 5)), (10, 200, 10))
        self.assertIn(
            "palette image with 1 colour converted to RGB; check", decoded.notes[0]
        )

    def test_it_takes_the_first_frame_of_an_animated_gif(self):
        frames = [
            Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")
        ]
        data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])

        decoded = decode_image(data)
        red, green, blue = decoded.image.getpixel((8, 8))
        self.assertGreater(red, 200)
        self.assertLess(green, 60)
        self.assertIn("animated GIF: first of 3 frames used", decoded.notes)

    def test_it_accepts_every_supported_format(self):
        image = Image.new("RGB", (12, 8), (40, 80, 120))
        for fmt in ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"]:
            with self.subTest(fmt):
                decoded = decode_image(encode(image, fmt))
                self.assertEqual(decoded.format, fmt)
                self.assertEqual((decoded.width, decoded.height), (12, 8))

    def test_it_detects_the_format_from_content_not_the_name(self):
        # A PNG that someone named photo.jpg is still a PNG.
        decoded = decode_image(encode(Image.new("RGB", (4, 4)), "PNG"))
        self.assertEqual(decoded.format, "PNG")
        self.assertEqual(decoded.extension, "png")

    def test_it_rejects_a_truncated_jpeg(self):
        data = noisy_jpeg()
        with self.assertRaisesMessage(ImageRejected, "The image is incomplete"):
            decode_image(data[: len(data) // 2])

    def test_it_rejects_a_truncated_jpeg_in_draft_mode(self):
        data = noisy_jpeg((1600, 1200))
        with self.assertRaisesMessage(ImageRejected, "The image is incomplete"):
            decode_image(data[: len(data) // 2], draft_size=(200, 200))

    def test_it_rejects_a_truncated_png(self):
        data = encode(Image.effect_noise((200, 200), 60), "PNG")
        with self.assertRaises(ImageRejected):
            decode_image(data[: len(data) // 2])

    def test_it_rejects_an_empty_file(self):
        with self.assertRaisesMessage(ImageRejected, "The file is empty."):
            decode_image(b"")

    def test_it_rejects_a_text_file(self):
        with self.assertRaisesMessage(
            ImageRejected, "This is not an image: it is a text file."
        ):
            decode_image(b"name,label\nant.jpg,ants\n")

    def test_it_rejects_unknown_binary_content(self):
        with self.assertRaisesMessage(ImageRejected, "not in any known image format"):
            decode_image(bytes(range(256)) * 4)

    def test_it_rejects_other_image_formats_by_name(self):
        data = encode(Image.new("RGB", (16, 16)), "ICO")
        with self.assertRaisesMessage(
            ImageRejected, "ICO images are not accepted. Use JPEG, PNG"
        ):
            decode_image(data)

    def test_it_names_heic_photos(self):
        data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
        with self.assertRaisesMessage(ImageRejected, "HEIC/HEIF images"):
            decode_image(data)

    @override_settings(IMAGE_MAX_BYTES=1000)
    def test_it_rejects_files_over_the_size_limit(self):
        with self.assertRaisesMessage(ImageRejected, "files over 0.0 MB are refused"):
            decode_image(noisy_jpeg())

    @override_settings(IMAGE_MAX_PIXELS=100 * 100)
    def test_it_rejects_images_over_the_pixel_limit_before_decoding(self):
        # Only the header is complete: decoding would fail, so the refusal
        # must come from the declared size.
        data = encode(Image.new("RGB", (200, 100)), "PNG")
        with self.assertRaisesMessage(
            ImageRejected, "The image is 200×100 pixels (0.0 megapixels)"
        ):
            decode_image(data[:100])

    @override_settings(IMAGE_MAX_PIXELS=10**12)
    def test_it_rejects_decompression_bombs(self):
        # Even with our own limit lifted, Pillow's bomb guard answers clearly.
        header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
        data += png_chunk(b"IDAT", zlib.compress(bytes(1000)))
        with self.assertRaisesMessage(ImageRejected, "declares more pixels"):
            decode_image(data)

    def test_it_loads_a_stored_image(self):
        write_file(
            "projects/1/images/ab/photo.png", encode(Image.new("L", (5, 3)), "PNG")
        )
        image = load_stored_image("projects/1/images/ab/photo.png")
        self.assertEqual((image.mode, image.size), ("RGB", (5, 3)))
