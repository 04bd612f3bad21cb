//go:build !purego

#include "textflag.h"

// func sumLE(b []byte) uint64
//
// One ADCQ chain, 64 bytes a round: the carry flag is one, so a second
// accumulator would wait on the same chain. The carries out of each chain
// are counted in BX and added at the end. The tail is summed in pieces of
// 32, 16 and 8 bytes, then its last 1 to 7 bytes are gathered into one
// word: the 2-byte piece at bit 32, the odd byte at bit 48, which is the
// same sum mod 0xffff since 2^16 is 1 mod 0xffff.
TEXT ·sumLE(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	XORQ AX, AX // the sum
	XORQ BX, BX // its carries
	MOVQ CX, DX
	SHRQ $6, DX
	JZ   tail
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

tail:
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
	// BX counts carries, each a 2^64 that is 1 mod 2^64-1. Adding it can
	// carry only once, and then AX is less than BX: the 1 fits.
	ADDQ BX, AX
	ADCQ $0, AX
	MOVQ AX, ret+24(FP)
	RET
