"""The recurrent parameter generator itself (paper Section 3): the ring W (:mod:`.ring`), the
seeded generators of each R_i (:mod:`.generator`), the conversion of a network's layers into
views of rings (:mod:`.rpgify`), conv weight tying (:mod:`.tying`) and the parameter counts by
part and multiply-accumulates (:mod:`.params`)."""
