set terminal pngcairo size 900,500
set output 'pipeline-latency.png'
set grid
set title 'Pipeline added latency vs offered rate'
set xlabel 'offered events/s'
set ylabel 'ms'
set logscale y
set key top left
plot 'pipeline-latency.dat' using ($1==1?$2:1/0):3 with linespoints title '-w 1 p50', '' using ($1==1?$2:1/0):4 with linespoints title '-w 1 p99', '' using ($1==2?$2:1/0):3 with linespoints title '-w 2 p50', '' using ($1==2?$2:1/0):4 with linespoints title '-w 2 p99'
