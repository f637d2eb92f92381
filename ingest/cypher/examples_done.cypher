// examples_done: the ids of a run's complete examples.
MATCH (e:Example {run_id: $run_id}) WHERE e.complete RETURN e.example_id AS id
