set terminal pngcairo size 900,500
set output 'fanout.png'
set grid
set title 'Gateway fan-out: latency and memory vs viewers'
set xlabel 'connected SSE viewers'
set ylabel 'delivery latency, ms'
set y2label 'gateway RSS per viewer, KB'
set ytics nomirror
set y2tics
set key top left
plot 'fanout.dat' using 1:2 with linespoints title 'p50 latency', '' using 1:3 with linespoints title 'p99 latency', '' using 1:4 axes x1y2 with linespoints title 'RSS per viewer'
