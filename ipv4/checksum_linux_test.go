package ipv4

import (
	"os"
	"syscall"
	"testing"
)

// TestSumStaysInBounds sums slices that end where a page ends and start
// where one starts, between pages that fault when touched: a load past
// either end of b kills the test.
func TestSumStaysInBounds(t *testing.T) {
	page := os.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip("mmap:", err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mprotect(mem[2*page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	mid := mem[page : 2*page : 2*page]
	for i := range mid {
		mid[i] = byte(i*13 + 1)
	}
	for n := 0; n <= page; n++ {
		if n > 300 && n%61 != 0 && n != page {
			continue
		}
		for _, b := range [][]byte{mid[page-n:], mid[:n:n]} {
			eachLoop(func(loop string) {
				if got, want := Sum(b, 0), sumGeneric(b, 0); got != want {
					t.Fatalf("len %d, loop %s: Sum %#x, Go loop %#x", n, loop, got, want)
				}
			})
		}
	}
}
