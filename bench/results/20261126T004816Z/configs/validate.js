// nginx + njs peer of bench/run: checks the removal body the way meetgate's
// src/validate.rs does, then hands the request to the proxying location.
//
// Rules (400 otherwise, with a JSON error naming the field path):
//   Content-Type application/json (415 otherwise);
//   the body is a JSON object with exactly one key, bulkDelAttendInfo;
//   bulkDelAttendInfo is an array of 1..50 objects;
//   each has number (non-empty string, at most 64 characters, no control characters)
//   and optionally participantID ([A-Za-z0-9_-]{1,64}), no other key;
//   no two items are the same.
// Known differences from meetgate (JSON.parse cannot see them): a duplicated key is not
// refused (the last one wins), and the raw body is forwarded, not a canonical re-serialisation.
//
// Works with the Debian njs module (0.7.x): js_content reads the whole body into memory
// (client_body_buffer_size >= client_max_body_size), and r.internalRedirect() to a named
// location lets proxy_pass forward that same body over the pooled upstream connection.

var MAX_ATTENDEES = 50;
var PARTICIPANT_ID = /^[A-Za-z0-9_-]{1,64}$/;
// Rust's char::is_control: the Cc category, U+0000..U+001F and U+007F..U+009F.
var CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function refuse(r, status, code, msg) {
    r.headersOut['Content-Type'] = 'application/json;charset=UTF-8';
    r.return(status, JSON.stringify({ error_code: code, error_msg: msg }));
}

// Characters as Rust counts them (Unicode scalar values), not UTF-16 units.
function chars(s) {
    if (s.length <= 64) {
        return s.length; // an upper bound; exact enough for a <= 64 test
    }
    var n = 0;
    for (var i = 0; i < s.length; i++) {
        var c = s.charCodeAt(i);
        if (c < 0xdc00 || c > 0xdfff) {
            n++;
        }
    }
    return n;
}

function problem(v) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        return 'body: must be a JSON object';
    }
    var keys = Object.keys(v);
    for (var k = 0; k < keys.length; k++) {
        if (keys[k] !== 'bulkDelAttendInfo') {
            return 'body: unknown field (the only accepted field is bulkDelAttendInfo)';
        }
    }
    var list = v.bulkDelAttendInfo;
    if (list === undefined) {
        return 'bulkDelAttendInfo: is required';
    }
    if (!Array.isArray(list)) {
        return 'bulkDelAttendInfo: must be an array of attendee objects';
    }
    if (list.length === 0) {
        return 'bulkDelAttendInfo: must contain at least one attendee';
    }
    if (list.length > MAX_ATTENDEES) {
        return 'bulkDelAttendInfo: at most ' + MAX_ATTENDEES + ' attendees per request';
    }
    var seen = {};
    for (var i = 0; i < list.length; i++) {
        var here = 'bulkDelAttendInfo[' + i + ']';
        var item = list[i];
        if (typeof item !== 'object' || item === null || Array.isArray(item)) {
            return here + ': must be an object';
        }
        var fields = Object.keys(item);
        for (var f = 0; f < fields.length; f++) {
            if (fields[f] !== 'number' && fields[f] !== 'participantID') {
                return here + ': unknown field (accepted fields are number and participantID)';
            }
        }
        var number = item.number;
        if (number === undefined) {
            return here + '.number: is required';
        }
        if (typeof number !== 'string') {
            return here + '.number: must be a string';
        }
        if (number.length === 0) {
            return here + '.number: must be a non-empty string';
        }
        if (chars(number) > 64) {
            return here + '.number: must be at most 64 characters';
        }
        if (CONTROL.test(number)) {
            return here + '.number: must not contain control characters';
        }
        var pid = item.participantID;
        var key = number + '\u0000';
        if (pid !== undefined) {
            if (typeof pid !== 'string') {
                return here + '.participantID: must be a string';
            }
            if (!PARTICIPANT_ID.test(pid)) {
                return here + '.participantID: must be 1 to 64 of letters, digits, _ and -';
            }
            key += '\u0001' + pid;
        }
        if (seen[key]) {
            return here + ': duplicates an earlier item';
        }
        seen[key] = true;
    }
    return null;
}

function check(r) {
    var ct = (r.headersIn['Content-Type'] || '').split(';')[0].trim().toLowerCase();
    if (ct !== 'application/json') {
        refuse(r, 415, 'NJS.UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
        return;
    }
    var text = r.requestText;
    if (text === undefined) {
        refuse(r, 400, 'NJS.INVALID_REQUEST', 'body: missing or not buffered in memory');
        return;
    }
    var v;
    try {
        v = JSON.parse(text);
    } catch (e) {
        refuse(r, 400, 'NJS.INVALID_REQUEST', 'body: is not valid JSON');
        return;
    }
    var why = problem(v);
    if (why !== null) {
        refuse(r, 400, 'NJS.INVALID_REQUEST', why);
        return;
    }
    r.internalRedirect('@upstream');
}

export default { check };
