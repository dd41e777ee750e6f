# throughput.gp - tasks/s against the window (tasks in flight from one
# client) for gsched and the peers, 1 and 2 workers, from bench/summarize.py.
#   gnuplot -e "dir='build/bench-results/plot'; out='docs/img/bench-throughput.png'" throughput.gp
# Data: tp_SYSTEM_Nw.dat, columns: window, median tasks/s.
set terminal pngcairo size 1000,720 enhanced font "DejaVu Sans,11"
set output out
set title "Throughput against window size, echo of 16 bytes, one client (median of runs)"
set xlabel "window (tasks in flight, log scale)" offset 0,0.7
set ylabel "tasks/s (log scale)"
set logscale xy
set format y "%.0s%c"
set ytics 2
set grid xtics ytics mxtics mytics
set key below box maxrows 2 width 2
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 1
set style line 2 lc rgb "#1f77b4" lw 2 pt 5 ps 1 dt 2
set style line 3 lc rgb "#d62728" lw 2 pt 9 ps 1.2
set style line 4 lc rgb "#d62728" lw 2 pt 11 ps 1.2 dt 2
set style line 5 lc rgb "#2ca02c" lw 2 pt 13 ps 1.2
set style line 6 lc rgb "#2ca02c" lw 2 pt 15 ps 1.2 dt 2
plot dir."/tp_gsched_1w.dat"     using 1:2 with linespoints ls 1 title "gsched, 1 worker", \
     dir."/tp_gsched_2w.dat"     using 1:2 with linespoints ls 2 title "gsched, 2 workers", \
     dir."/tp_beanstalkd_1w.dat" using 1:2 with linespoints ls 3 title "beanstalkd, 1 worker", \
     dir."/tp_beanstalkd_2w.dat" using 1:2 with linespoints ls 4 title "beanstalkd, 2 workers", \
     dir."/tp_gearmand_1w.dat"   using 1:2 with linespoints ls 5 title "gearmand, 1 worker", \
     dir."/tp_gearmand_2w.dat"   using 1:2 with linespoints ls 6 title "gearmand, 2 workers"
