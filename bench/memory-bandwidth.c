// Streams a 256 MiB buffer with AVX2 loads and prints GB/s; see memory-bandwidth.sh.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <immintrin.h>
int main(int argc,char**argv){size_t n=(size_t)256<<20; int reps=argc>1?atoi(argv[1]):20;
 uint8_t*b=aligned_alloc(64,n); for(size_t i=0;i<n;i++)b[i]=i;
 struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0); __m256i acc=_mm256_setzero_si256();
 for(int r=0;r<reps;r++) for(size_t i=0;i<n;i+=128){acc=_mm256_add_epi64(acc,_mm256_load_si256((__m256i*)(b+i)));acc=_mm256_add_epi64(acc,_mm256_load_si256((__m256i*)(b+i+32)));acc=_mm256_add_epi64(acc,_mm256_load_si256((__m256i*)(b+i+64)));acc=_mm256_add_epi64(acc,_mm256_load_si256((__m256i*)(b+i+96)));}
 clock_gettime(CLOCK_MONOTONIC,&t1); double s=(t1.tv_sec-t0.tv_sec)+(t1.tv_nsec-t0.tv_nsec)/1e9;
 long long x[4]; _mm256_storeu_si256((__m256i*)x,acc);
 printf("%.1f GB/s (%lld)\n", n*(double)reps/s/1e9, x[0]&1); return 0;}
