// Sync rules used by the tests (classic bucket_definitions, PowerSync edition 1).

/** Each user gets the lists they own and the todos they created. */
export const PER_USER_RULES = `bucket_definitions:
  user_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
      - SELECT * FROM todos WHERE created_by = bucket.user_id
`;

/**
 * Per-user lists and todos, plus lists shared through list_members (table-based parameter query)
 * with all their todos, plus the user's own membership rows.
 */
export const SHARED_LIST_RULES = `bucket_definitions:
  user_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
      - SELECT * FROM todos WHERE created_by = bucket.user_id
      - SELECT * FROM list_members WHERE user_id = bucket.user_id
  shared_lists:
    parameters: SELECT list_id FROM list_members WHERE user_id = request.user_id()
    data:
      - SELECT * FROM lists WHERE id = bucket.list_id
      - SELECT * FROM todos WHERE list_id = bucket.list_id
`;
