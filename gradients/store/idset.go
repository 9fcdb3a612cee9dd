package store

import "slices"

// idSet is the set of the ids of a store. Ids mostly arrive increasing
// (positions in the inputs, or files written in id order), and while they
// do the set is the increasing slice of them: 8 bytes a row, and a new id is
// checked with one comparison. The first id out of order turns it into a
// map, about 40 bytes a row.
type idSet struct {
	inc []int64            // while m is nil: every id, increasing
	m   map[int64]struct{} // once ids came out of order
}

func (s *idSet) has(id int64) bool {
	if s.m != nil {
		_, ok := s.m[id]
		return ok
	}
	if len(s.inc) == 0 || id > s.inc[len(s.inc)-1] {
		return false
	}
	_, ok := slices.BinarySearch(s.inc, id)
	return ok
}

// add adds id, which the set must not hold.
func (s *idSet) add(id int64) {
	if s.m == nil {
		if len(s.inc) == 0 || id > s.inc[len(s.inc)-1] {
			s.inc = append(s.inc, id)
			return
		}
		s.m = make(map[int64]struct{}, 2*len(s.inc))
		for _, x := range s.inc {
			s.m[x] = struct{}{}
		}
		s.inc = nil
	}
	s.m[id] = struct{}{}
}

// undo removes ids, the ids added last, in order.
func (s *idSet) undo(ids []int64) {
	if s.m == nil {
		s.inc = s.inc[:len(s.inc)-len(ids)]
		return
	}
	for _, id := range ids {
		delete(s.m, id)
	}
}
