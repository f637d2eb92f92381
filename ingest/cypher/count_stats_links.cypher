// count_stats_links: the HAS_STATS relationships (left out of a load's counts).
MATCH ()-[x:HAS_STATS]->() RETURN count(x) AS c
