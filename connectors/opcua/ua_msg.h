/*
 * connectors/opcua: the OPC UA messages the client sends and the responses
 * it decodes (library sl_opcua_codec; Part 4 services, Part 6 encoding).
 *
 * Transport framing (Part 6 section 7): every chunk starts with an 8-byte
 * header (3-byte message type, 1-byte chunk type F/C/A, UInt32 size).
 * sl_ua_chunk_parse() checks one; the secure channel layer (ua_conn.c)
 * assembles a message from its chunks and hands the service body, which
 * starts with the type's binary encoding NodeId, to sl_ua_msg_decode().
 *
 * Encoders append one service request (its encoding NodeId and body) to a
 * writer; the caller wraps it in chunks.
 */
#ifndef SL_UA_MSG_H
#define SL_UA_MSG_H

#include "connectors/opcua/ua_codec.h"

/* Binary encoding ids (namespace 0) of the services used. */
enum {
  UA_ID_SERVICE_FAULT = 397,
  UA_ID_ANONYMOUS_TOKEN = 321,
  UA_ID_USERNAME_TOKEN = 324,
  UA_ID_OPN_REQ = 446,
  UA_ID_OPN_RESP = 449,
  UA_ID_CLO_REQ = 452,
  UA_ID_CREATE_SESSION_REQ = 461,
  UA_ID_CREATE_SESSION_RESP = 464,
  UA_ID_ACTIVATE_SESSION_REQ = 467,
  UA_ID_ACTIVATE_SESSION_RESP = 470,
  UA_ID_CLOSE_SESSION_REQ = 473,
  UA_ID_CLOSE_SESSION_RESP = 476,
  UA_ID_BROWSE_REQ = 527,
  UA_ID_BROWSE_RESP = 530,
  UA_ID_BROWSE_NEXT_REQ = 533,
  UA_ID_BROWSE_NEXT_RESP = 536,
  UA_ID_TRANSLATE_REQ = 554,
  UA_ID_TRANSLATE_RESP = 557,
  UA_ID_READ_REQ = 631,
  UA_ID_READ_RESP = 634,
  UA_ID_DATA_CHANGE_FILTER = 724,
  UA_ID_CREATE_MON_REQ = 751,
  UA_ID_CREATE_MON_RESP = 754,
  UA_ID_CREATE_SUB_REQ = 787,
  UA_ID_CREATE_SUB_RESP = 790,
  UA_ID_DATA_CHANGE_NOTIF = 811,
  UA_ID_STATUS_CHANGE_NOTIF = 820,
  UA_ID_PUBLISH_REQ = 826,
  UA_ID_PUBLISH_RESP = 829,
  UA_ID_REPUBLISH_REQ = 832,
  UA_ID_REPUBLISH_RESP = 835,
  UA_ID_TRANSFER_REQ = 841,
  UA_ID_TRANSFER_RESP = 844,
  UA_ID_DELETE_SUBS_REQ = 847,
  UA_ID_DELETE_SUBS_RESP = 850,
};

/* Well-known nodes. */
enum {
  UA_NS0_OBJECTS_FOLDER = 85,
  UA_NS0_HIERARCHICAL_REFS = 33,
  UA_ATTR_VALUE = 13,
  UA_ATTR_DATATYPE = 14,
};

#define UA_POLICY_NONE "http://opcfoundation.org/UA/SecurityPolicy#None"

/* ---- chunks ------------------------------------------------------------- */

typedef struct sl_ua_chunk_hdr {
  char type[4];  /* "HEL", "ACK", "ERR", "OPN", "MSG", "CLO", NUL-ended */
  char chunk;    /* 'F', 'C' or 'A' */
  uint32_t size; /* the whole chunk, header included */
} sl_ua_chunk_hdr_t;

/* Parses the 8-byte header at p. Returns 0, or SL_UA_EDECODE for an
 * unknown message type, chunk type or a size below 8 or above max. */
int sl_ua_chunk_parse(const uint8_t *p, uint32_t max, sl_ua_chunk_hdr_t *h);

/* ---- requests ----------------------------------------------------------- */

/* What every request header carries. */
typedef struct sl_ua_req {
  const sl_ua_nodeid_t *auth; /* session's authentication token; NULL: null */
  uint32_t handle;            /* request handle */
  uint32_t timeout_ms;        /* timeout hint */
} sl_ua_req_t;

typedef struct sl_ua_browse_path_elem {
  sl_ua_qname_t name;
} sl_ua_browse_path_elem_t;

typedef struct sl_ua_browse_path {
  sl_ua_nodeid_t start;
  const sl_ua_qname_t *elems;
  uint32_t n;
} sl_ua_browse_path_t;

/* One monitored item to create. deadband_type: 0 none, 1 absolute,
 * 2 percent (of the EURange). */
typedef struct sl_ua_mon_req {
  sl_ua_nodeid_t node;
  uint32_t handle;
  double sampling_ms;
  uint32_t queue_size;
  uint32_t deadband_type;
  double deadband;
} sl_ua_mon_req_t;

typedef struct sl_ua_sub_ack {
  uint32_t sub_id, seq;
} sl_ua_sub_ack_t;

/* The identity of ActivateSession: anonymous when user is NULL. */
typedef struct sl_ua_identity {
  const char *policy_id; /* the server's UserTokenPolicy id */
  const char *user, *password;
} sl_ua_identity_t;

void sl_ua_enc_opn(sl_ua_wr_t *w, const sl_ua_req_t *rq, int renew,
                   uint32_t lifetime_ms);
void sl_ua_enc_clo(sl_ua_wr_t *w, const sl_ua_req_t *rq);
void sl_ua_enc_create_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                              const char *endpoint_url, const char *name,
                              double timeout_ms);
void sl_ua_enc_activate_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                                const sl_ua_identity_t *id);
void sl_ua_enc_close_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                             bool delete_subs);
/* Forward hierarchical references of each node, every result field. */
void sl_ua_enc_browse(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                      const sl_ua_nodeid_t *nodes, uint32_t n,
                      uint32_t max_refs);
void sl_ua_enc_browse_next(sl_ua_wr_t *w, const sl_ua_req_t *rq, bool release,
                           const sl_ua_str_t *cps, uint32_t n);
void sl_ua_enc_translate(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                         const sl_ua_browse_path_t *paths, uint32_t n);
/* The attribute attr of each node, both timestamps. */
void sl_ua_enc_read(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                    const sl_ua_nodeid_t *nodes, uint32_t n, uint32_t attr);
void sl_ua_enc_create_sub(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                          double interval_ms, uint32_t lifetime,
                          uint32_t keepalive, uint32_t max_notifs);
void sl_ua_enc_create_mon(sl_ua_wr_t *w, const sl_ua_req_t *rq, uint32_t sub_id,
                          const sl_ua_mon_req_t *items, uint32_t n);
void sl_ua_enc_publish(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                       const sl_ua_sub_ack_t *acks, uint32_t n);
void sl_ua_enc_republish(sl_ua_wr_t *w, const sl_ua_req_t *rq, uint32_t sub_id,
                         uint32_t seq);
void sl_ua_enc_transfer(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                        const uint32_t *subs, uint32_t n, bool send_initial);
void sl_ua_enc_delete_subs(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                           const uint32_t *subs, uint32_t n);

/* ---- responses ---------------------------------------------------------- */

typedef struct sl_ua_token_policy {
  sl_ua_str_t policy_id;
  int32_t token_type; /* 0 anonymous, 1 user name, 2 certificate, 3 issued */
  sl_ua_str_t security_policy; /* "" or null: the channel's */
} sl_ua_token_policy_t;

typedef struct sl_ua_endpoint {
  sl_ua_str_t url, security_policy;
  int32_t security_mode; /* 1 None, 2 Sign, 3 SignAndEncrypt */
  sl_ua_token_policy_t *tokens;
  uint32_t ntokens;
} sl_ua_endpoint_t;

typedef struct sl_ua_ref {
  sl_ua_nodeid_t ref_type;
  bool forward;
  sl_ua_expnodeid_t node;
  sl_ua_qname_t browse_name;
  sl_ua_ltext_t display_name;
  int32_t node_class; /* 1 Object, 2 Variable, 4 Method, ... */
} sl_ua_ref_t;

typedef struct sl_ua_browse_result {
  uint32_t status;
  sl_ua_str_t cont; /* continuation point, null when done */
  sl_ua_ref_t *refs;
  uint32_t nrefs;
} sl_ua_browse_result_t;

typedef struct sl_ua_path_result {
  uint32_t status;
  sl_ua_expnodeid_t *targets;
  uint32_t ntargets;
} sl_ua_path_result_t;

typedef struct sl_ua_mon_result {
  uint32_t status, id;
  double sampling_ms;
  uint32_t queue_size;
} sl_ua_mon_result_t;

typedef struct sl_ua_item_value {
  uint32_t handle;
  sl_ua_datavalue_t dv;
} sl_ua_item_value_t;

/* A NotificationMessage, its data changes flattened. */
typedef struct sl_ua_notif {
  uint32_t seq;
  int64_t publish_time;
  sl_ua_item_value_t *items;
  uint32_t nitems;
  bool has_status_change;
  uint32_t status_change; /* StatusChangeNotification's status */
  uint32_t nother;        /* notifications of other types (events) */
} sl_ua_notif_t;

typedef struct sl_ua_transfer_result {
  uint32_t status;
  uint32_t *avail;
  uint32_t navail;
} sl_ua_transfer_result_t;

typedef struct sl_ua_resp_hdr {
  int64_t timestamp;
  uint32_t handle;
  uint32_t result; /* serviceResult */
} sl_ua_resp_hdr_t;

typedef struct sl_ua_msg {
  uint32_t type; /* UA_ID_*_RESP or UA_ID_SERVICE_FAULT */
  sl_ua_resp_hdr_t hdr;
  union {
    struct {
      uint32_t channel_id, token_id, lifetime_ms;
      int64_t created;
    } opn;
    struct {
      sl_ua_nodeid_t session_id, auth_token;
      double timeout_ms;
      uint32_t max_request_size;
      sl_ua_endpoint_t *eps;
      uint32_t neps;
    } session;
    struct {
      uint32_t *codes; /* ActivateSession, DeleteSubscriptions */
      uint32_t n;
    } codes;
    struct {
      sl_ua_browse_result_t *res; /* Browse, BrowseNext */
      uint32_t n;
    } browse;
    struct {
      sl_ua_path_result_t *res;
      uint32_t n;
    } translate;
    struct {
      sl_ua_datavalue_t *dv;
      uint32_t n;
    } read;
    struct {
      uint32_t id, lifetime, keepalive;
      double interval_ms;
    } sub;
    struct {
      sl_ua_mon_result_t *res;
      uint32_t n;
    } mon;
    struct {
      uint32_t sub_id; /* Publish only */
      uint32_t *avail; /* Publish: available sequence numbers */
      uint32_t navail;
      bool more;
      sl_ua_notif_t notif; /* Publish and Republish */
      uint32_t *acks;      /* Publish: one result per acknowledgement */
      uint32_t nacks;
    } pub;
    struct {
      sl_ua_transfer_result_t *res;
      uint32_t n;
    } transfer;
  } u;
} sl_ua_msg_t;

/*
 * Decodes a service response (its encoding NodeId first) into out, arrays
 * and nested values from arena. A type not listed above decodes its
 * ResponseHeader only (type set). Returns 0 or SL_UA_EDECODE / -ENOMEM.
 */
int sl_ua_msg_decode(const uint8_t *p, size_t len, sl_ua_arena_t *arena,
                     sl_ua_msg_t *out);

#endif /* SL_UA_MSG_H */
