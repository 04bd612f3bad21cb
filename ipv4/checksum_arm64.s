//go:build !purego

#include "textflag.h"

// func sumLE(b []byte) uint64
//
// One ADDS/ADCS chain a round of 64 bytes, loaded in pairs with LDP; the
// carry out of each chain is counted in R3 and added at the end. The tail
// is summed in pieces of 32, 16 and 8 bytes, then its last 1 to 7 bytes
// are gathered into one word: the 2-byte piece at bit 32, the odd byte at
// bit 48, which is the same sum mod 0xffff since 2^16 is 1 mod 0xffff.
TEXT ·sumLE(SB), NOSPLIT, $0-32
	MOVD b_base+0(FP), R0
	MOVD b_len+8(FP), R1
	MOVD ZR, R2 // the sum
	MOVD ZR, R3 // its carries
	LSR  $6, R1, R4
	CBZ  R4, tail

loop64:
	LDP   0(R0), (R5, R6)
	LDP   16(R0), (R7, R8)
	LDP   32(R0), (R9, R10)
	LDP   48(R0), (R11, R12)
	ADDS  R5, R2, R2
	ADCS  R6, R2, R2
	ADCS  R7, R2, R2
	ADCS  R8, R2, R2
	ADCS  R9, R2, R2
	ADCS  R10, R2, R2
	ADCS  R11, R2, R2
	ADCS  R12, R2, R2
	ADC   ZR, R3, R3
	ADD   $64, R0
	SUB   $1, R4
	CBNZ  R4, loop64

tail:
	TBZ  $5, R1, tail16
	LDP  0(R0), (R5, R6)
	LDP  16(R0), (R7, R8)
	ADDS R5, R2, R2
	ADCS R6, R2, R2
	ADCS R7, R2, R2
	ADCS R8, R2, R2
	ADC  ZR, R3, R3
	ADD  $32, R0

tail16:
	TBZ  $4, R1, tail8
	LDP  0(R0), (R5, R6)
	ADDS R5, R2, R2
	ADCS R6, R2, R2
	ADC  ZR, R3, R3
	ADD  $16, R0

tail8:
	TBZ  $3, R1, tail4
	MOVD 0(R0), R5
	ADDS R5, R2, R2
	ADC  ZR, R3, R3
	ADD  $8, R0

tail4:
	MOVD  ZR, R5
	TBZ   $2, R1, tail2
	MOVWU 0(R0), R5
	ADD   $4, R0

tail2:
	TBZ   $1, R1, tail1
	MOVHU 0(R0), R6
	ORR   R6<<32, R5, R5
	ADD   $2, R0

tail1:
	TBZ   $0, R1, done
	MOVBU 0(R0), R6
	ORR   R6<<48, R5, R5

done:
	ADDS R5, R2, R2
	ADC  ZR, R3, R3
	// R3 counts carries, each a 2^64 that is 1 mod 2^64-1. Adding it can
	// carry only once, and then R2 is less than R3: the 1 fits.
	ADDS R3, R2, R2
	ADC  ZR, R2, R2
	MOVD R2, ret+24(FP)
	RET
