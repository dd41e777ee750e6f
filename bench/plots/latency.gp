# latency.gp - round-trip latency percentiles (one task in flight) of gsched
# and the peers on one chart, from bench/summarize.py's plot data.
#   gnuplot -e "dir='build/bench-results/plot'; out='docs/img/bench-latency.png'" latency.gp
# Data: lat_SYSTEM_Nw.dat, columns: x on a "nines" axis (-log10(1 - p/100)),
# percentile, microseconds.
set terminal pngcairo size 1000,720 enhanced font "DejaVu Sans,11"
set output out
set title "Round-trip latency, echo of 16 bytes, one task in flight (median of runs)\npeers: p50, p90, p99, p99.9 and max only (max drawn at 1 - 1/N)"
set xlabel "percentile" offset 0,0.7
set ylabel "round trip (µs, log scale)"
set logscale y
set grid xtics ytics mytics
set key below box maxrows 2 width 2
set xrange [0:4.2]
set xtics ("0" 0, "50" 0.30103, "90" 1, "99" 2, "99.9" 3, "99.99" 4)
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set style line 2 lc rgb "#1f77b4" lw 2 pt 5 ps 0.8 dt 2
set style line 3 lc rgb "#d62728" lw 2 pt 9 ps 1.2
set style line 4 lc rgb "#d62728" lw 2 pt 11 ps 1.2 dt 2
set style line 5 lc rgb "#2ca02c" lw 2 pt 13 ps 1.2
set style line 6 lc rgb "#2ca02c" lw 2 pt 15 ps 1.2 dt 2
plot dir."/lat_gsched_1w.dat"     using 1:3 with linespoints ls 1 title "gsched, 1 worker", \
     dir."/lat_gsched_2w.dat"     using 1:3 with linespoints ls 2 title "gsched, 2 workers", \
     dir."/lat_beanstalkd_1w.dat" using 1:3 with linespoints ls 3 title "beanstalkd, 1 worker", \
     dir."/lat_beanstalkd_2w.dat" using 1:3 with linespoints ls 4 title "beanstalkd, 2 workers", \
     dir."/lat_gearmand_1w.dat"   using 1:3 with linespoints ls 5 title "gearmand, 1 worker", \
     dir."/lat_gearmand_2w.dat"   using 1:3 with linespoints ls 6 title "gearmand, 2 workers"
