package broker

// The journal records a queue makes: what its messages' removals and
// delivery counts look like on disk, and what a put-back needs.

// appendRemoval appends to recs the record of qm leaving q for good, if q
// journals it.
func (q *queue) appendRemoval(recs []JournalRecord, qm *queuedMessage) []JournalRecord {
	if !q.journaled || !qm.msg.Persistent {
		return recs
	}
	return append(recs, JournalRecord{Op: OpRemove, Queue: q.journalName(), MessageID: qm.msg.ID})
}

// putBackDeleted puts back a message whose queue was removed meanwhile: a
// plain queue retired once it looked empty and idle is looked up (created)
// again by name, so the message is not lost, and its enqueue on disk names
// that queue still. A temporary queue or a durable subscription's queue
// took its messages with it: the message is dropped (it left q's counts
// when it was taken) and its removal journaled, which a durable's delete
// record made already.
func (q *queue) putBackDeleted(qm *queuedMessage) {
	if qm.settle != nil { // fed by the cluster: back to it
		settleNow(qm, settleNak)
		return
	}
	if !q.durable && q.owner == nil {
		if err := q.sp.enqueueNamed(q.name, qm.msg, false, anyCreator); err == nil {
			return
		}
	}
	q.b.journalRemoves(q.appendRemoval(nil, qm))
	q.b.stats.Dropped.Add(1)
}

// appendDeliveries appends to recs the record of qm's delivery count, if q
// journals it: qm went back to q after a delivery, and a restart must not
// start its count over (max_redeliveries). It is journaled without waiting,
// as removals are: a crash that loses it costs one count.
func (q *queue) appendDeliveries(recs []JournalRecord, qm *queuedMessage) []JournalRecord {
	if !q.journaled || !qm.msg.Persistent {
		return recs
	}
	return append(recs, JournalRecord{Op: OpDeliveries, Queue: q.journalName(), MessageID: qm.msg.ID, Deliveries: qm.deliveries})
}
