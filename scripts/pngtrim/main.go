// Command pngtrim cuts the blank bottom off a screenshot: headless
// Chromium captures its whole window, and a message is shorter than that.
//
// Usage: go run ./scripts/pngtrim IN.png OUT.png
//
// It keeps the full width and every row down to the last one that is not
// the background colour (the colour of the bottom-left pixel), plus a
// margin. scripts/pictures.sh uses it for docs/*.png.
package main

import (
	"fmt"
	"image"
	"image/png"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pngtrim IN.png OUT.png")
		os.Exit(2)
	}
	if err := trim(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "pngtrim:", err)
		os.Exit(1)
	}
}

// subImager is what image.RGBA and image.NRGBA (png.Decode's results) offer.
type subImager interface {
	image.Image
	SubImage(r image.Rectangle) image.Image
}

func trim(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	si, ok := img.(subImager)
	if !ok {
		return fmt.Errorf("%s: unsupported PNG colour model %T", in, img)
	}
	b := img.Bounds()
	bg := img.At(b.Min.X, b.Max.Y-1)
	br, bgG, bb, ba := bg.RGBA()
	last := b.Min.Y
	for y := b.Max.Y - 1; y >= b.Min.Y && last == b.Min.Y; y-- {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if r != br || g != bgG || bl != bb || a != ba {
				last = y
				break
			}
		}
	}
	margin := b.Dx() / 40
	bottom := min(b.Max.Y, last+1+margin)
	cropped := si.SubImage(image.Rect(b.Min.X, b.Min.Y, b.Max.X, bottom))
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(o, cropped); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
