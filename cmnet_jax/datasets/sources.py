"""Where each licence-restricted database comes from and how to lay it out (one place for the
command line's error messages and the TFDS builders' manual-download instructions).

>>> 'CASME II' in describe('casme2')
True
"""

SOURCES = {
    "casme2": {
        "title": "CASME II",
        "request": "the CASME team, Institute of Psychology, Chinese Academy of Sciences "
                   "(request form at http://casme.psych.ac.cn/casme/e2)",
        "layout": "<root>/Cropped/sub01/EP02_01f/reg_img46.jpg ... (or CASME2_RAW_selected/, "
                  "CASME2-RAW/, Cropped-updated/Cropped/) and <root>/CASME2-coding-20190701.xlsx "
                  "(or -20140508.xlsx)",
    },
    "samm": {
        "title": "SAMM",
        "request": "Manchester Metropolitan University (Moi Hoon Yap; request form at "
                   "https://helward.mmu.ac.uk/STAFF/M.Yap/dataset.php)",
        "layout": "<root>/SAMM/006/006_1_2/006_05562.jpg ... (or <root>/006/...) and "
                  "<root>/SAMM_Micro_FACS_Codes_v2.xlsx",
    },
    "smic": {
        "title": "SMIC-HS",
        "request": "the Center for Machine Vision and Signal Analysis, University of Oulu "
                   "(Guoying Zhao / Xiaobai Li; request by e-mail, licence agreement required)",
        "layout": "<root>/SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image559740.bmp ... "
                  "(or SMIC_all_raw/HS/...); labels come from the folders",
    },
    "casme3": {
        "title": "CAS(ME)^3 Part A",
        "request": "the CASME team, Institute of Psychology, Chinese Academy of Sciences "
                   "(request form at http://casme.psych.ac.cn/casme/e4)",
        "layout": "<root>/part_A/.../spNO.1/a/color/355.jpg ... (or Part_A_ME_clip/frame/"
                  "spNO.1_a_355/355.jpg) and <root>/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
    },
    "megc2019": {
        "title": "the MEGC2019 composite (CASME II + SAMM + SMIC-HS)",
        "request": "each of the three databases from its owners (see casme2, samm, smic) and "
                   "combined_3class_gt.csv from the MEGC2019 challenge materials",
        "layout": "<root>/CASME2/ (as for casme2), <root>/SAMM/ (as for samm), <root>/SMIC/ "
                  "(as for smic) and <root>/combined_3class_gt.csv",
    },
}


def describe(name: str) -> str:
  """A paragraph: what the database is, where to request it, and how to lay it out."""
  if name not in SOURCES:
    raise KeyError(f"unknown database {name!r}; known: {sorted(SOURCES)}")
  s = SOURCES[name]
  return (f"{s['title']} is licence-restricted: request it from {s['request']}. "
          f"Unpack it so that it looks like {s['layout']}.")
