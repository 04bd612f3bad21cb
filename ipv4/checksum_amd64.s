//go:build !purego

#include "textflag.h"

// avx2Chunk bounds the 128-byte rounds the AVX2 loop runs before its lanes
// are added up: 2^26 rounds (8 GiB) keep each of the two sums it ends with
// below 2^62, as the arithmetic at the end of a chunk needs.
#define avx2Chunk (1<<26)

// func sumLE(b []byte) uint64
//
// The sum is AX; BX counts the carries out of it, each a 2^64, which is 1
// mod 2^64-1, and is added to AX at the end.
//
// From 128 bytes, with AVX2, 128 bytes a round in four 32-byte vectors:
// each 64-bit lane adds the words whole (wrapping, in Y8 and Y9) and their
// high halves (exactly, in Y10-Y13). What the wrapping sum lost is then
// known: the sum of the low halves is raw - hi<<32 mod 2^64, exact because
// it is below 2^64; and hi*2^32 is hi mod 0xffff. Three vector operations a
// vector, where splitting each word into its two halves would take four.
//
// Without AVX2, 64 bytes a round in one ADCQ chain: there is one carry flag,
// so a second accumulator would wait on the same chain.
//
// The tail, under 128 bytes, is summed in pieces of 64, 32, 16 and 8
// bytes, then its last 1 to 7 bytes are gathered into one word: the 2-byte
// piece at bit 32, the odd byte at bit 48, which is the same sum mod 0xffff
// since 2^16 is 1 mod 0xffff.
TEXT ·sumLE(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	XORQ AX, AX
	XORQ BX, BX
	CMPQ CX, $128
	JB   tail64
	CMPB ·useAVX2(SB), $1
	JEQ  avx2

	MOVQ CX, DX
	SHRQ $6, DX
	CLC

loop64:
	// DECQ and LEAQ leave the carry flag alone: the chain runs on.
	ADCQ 0(SI), AX
	ADCQ 8(SI), AX
	ADCQ 16(SI), AX
	ADCQ 24(SI), AX
	ADCQ 32(SI), AX
	ADCQ 40(SI), AX
	ADCQ 48(SI), AX
	ADCQ 56(SI), AX
	LEAQ 64(SI), SI
	DECQ DX
	JNZ  loop64
	ADCQ $0, BX
	JMP  tail32

avx2:
	MOVQ CX, R10
	SHRQ $7, R10 // rounds left

chunk:
	MOVQ   $avx2Chunk, R11
	CMPQ   R10, R11
	CMOVQLT R10, R11
	SUBQ   R11, R10
	VPXOR  Y8, Y8, Y8
	VPXOR  Y9, Y9, Y9
	VPXOR  Y10, Y10, Y10
	VPXOR  Y11, Y11, Y11
	VPXOR  Y12, Y12, Y12
	VPXOR  Y13, Y13, Y13

loop128:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VPSRLQ  $32, Y0, Y4
	VPSRLQ  $32, Y1, Y5
	VPSRLQ  $32, Y2, Y6
	VPSRLQ  $32, Y3, Y7
	VPADDQ  Y0, Y8, Y8
	VPADDQ  Y1, Y9, Y9
	VPADDQ  Y2, Y8, Y8
	VPADDQ  Y3, Y9, Y9
	VPADDQ  Y4, Y10, Y10
	VPADDQ  Y5, Y11, Y11
	VPADDQ  Y6, Y12, Y12
	VPADDQ  Y7, Y13, Y13
	ADDQ    $128, SI
	DECQ    R11
	JNZ     loop128

	// Add up the lanes: raw (mod 2^64) in X8, hi (exact) in X10.
	VPADDQ       Y9, Y8, Y8
	VPADDQ       Y11, Y10, Y10
	VPADDQ       Y13, Y12, Y12
	VPADDQ       Y12, Y10, Y10
	VEXTRACTI128 $1, Y8, X0
	VEXTRACTI128 $1, Y10, X1
	VPADDQ       X0, X8, X8
	VPADDQ       X1, X10, X10
	VPSHUFD      $0xee, X8, X0
	VPSHUFD      $0xee, X10, X1
	VPADDQ       X0, X8, X8
	VPADDQ       X1, X10, X10
	VMOVQ        X8, DX
	VMOVQ        X10, DI
	MOVQ         DI, R8
	SHLQ         $32, R8
	SUBQ         R8, DX // lo
	ADDQ         DX, AX
	ADCQ         $0, BX
	ADDQ         DI, AX
	ADCQ         $0, BX
	TESTQ        R10, R10
	JNZ          chunk
	VZEROUPPER

tail64:
	TESTQ $64, CX
	JZ    tail32
	ADDQ  0(SI), AX
	ADCQ  8(SI), AX
	ADCQ  16(SI), AX
	ADCQ  24(SI), AX
	ADCQ  32(SI), AX
	ADCQ  40(SI), AX
	ADCQ  48(SI), AX
	ADCQ  56(SI), AX
	ADCQ  $0, BX
	ADDQ  $64, SI

tail32:
	TESTQ $32, CX
	JZ    tail16
	ADDQ  0(SI), AX
	ADCQ  8(SI), AX
	ADCQ  16(SI), AX
	ADCQ  24(SI), AX
	ADCQ  $0, BX
	ADDQ  $32, SI

tail16:
	TESTQ $16, CX
	JZ    tail8
	ADDQ  0(SI), AX
	ADCQ  8(SI), AX
	ADCQ  $0, BX
	ADDQ  $16, SI

tail8:
	TESTQ $8, CX
	JZ    tail4
	ADDQ  0(SI), AX
	ADCQ  $0, BX
	ADDQ  $8, SI

tail4:
	XORQ  DX, DX
	TESTQ $4, CX
	JZ    tail2
	MOVL  0(SI), DX
	ADDQ  $4, SI

tail2:
	TESTQ   $2, CX
	JZ      tail1
	MOVWQZX 0(SI), DI
	SHLQ    $32, DI
	ORQ     DI, DX
	ADDQ    $2, SI

tail1:
	TESTQ   $1, CX
	JZ      done
	MOVBQZX 0(SI), DI
	SHLQ    $48, DI
	ORQ     DI, DX

done:
	ADDQ DX, AX
	ADCQ $0, BX
	// Adding the carries can carry only once, and then AX is less than BX:
	// the 1 fits.
	ADDQ BX, AX
	ADCQ $0, AX
	MOVQ AX, ret+24(FP)
	RET
