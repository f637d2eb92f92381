// count_stats_nodes: the Stats nodes (left out of a load's counts).
MATCH (x:Stats) RETURN count(x) AS c
