"""The project's own English and Chinese class names and prompt templates for ELEVATER datasets with small label sets.

Keys are ELEVATER dataset names (as in ``elevater_en.json``); class lists follow ELEVATER's label ids, so entry ``i``
is the name of class id ``i``. The Chinese names and all templates were written for this project. Templates are
``str.format`` strings with one ``{}`` for the class name.

``ELEVATER_DATASET_METRICS`` gives each of ELEVATER's 20 image-classification datasets the metric its toolkit scores it
by (``TEST.METRIC`` of the dataset's config), including the datasets that have no built-in class names here, so a
task loaded from ELEVATER data is scored right even when no ``elevater_en.json`` is passed.

``DEFAULT_TEMPLATES`` are used for tasks whose class names come from elsewhere (an image folder, a Hub dataset,
``label_cn.txt``) and that have no templates of their own.
"""

from __future__ import annotations

DEFAULT_TEMPLATES: dict[str, list[str]] = {
    "en": [
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a close-up photo of the {}.",
        "a low-resolution photo of a {}.",
        "a bright photo of the {}.",
        "a picture of a {}.",
    ],
    "zh": [
        "一张{}的照片。",
        "一张模糊的{}的照片。",
        "{}的特写照片。",
        "一张低分辨率的{}的照片。",
        "一张明亮的{}的照片。",
        "一幅{}的图片。",
    ],
}

_TEXTURE_EN = [
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked", "crosshatched",
    "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy", "grid", "grooved", "honeycombed",
    "interlaced", "knitted", "lacelike", "lined", "marbled", "matted", "meshed", "paisley", "perforated", "pitted",
    "pleated", "polka-dotted", "porous", "potholed", "scaly", "smeared", "spiralled", "sprinkled", "stained",
    "stratified", "striped", "studded", "swirly", "veined", "waffled", "woven", "wrinkled", "zigzagged",
]  # fmt: skip
_TEXTURE_ZH = [
    "条带状", "斑驳", "辫状", "气泡状", "凹凸不平", "棋盘格", "蛛网状", "龟裂", "交叉线纹",
    "晶体状", "圆点", "纤维状", "斑点", "雀斑状", "荷叶边", "薄纱状", "网格", "沟槽", "蜂窝状",
    "交织", "针织", "蕾丝状", "线条", "大理石纹", "毡状", "网眼", "佩斯利花纹", "穿孔", "坑洼",
    "百褶", "波点", "多孔", "布满坑洞", "鳞片状", "涂抹", "螺旋", "撒点", "污渍",
    "分层", "条纹", "镶钉", "漩涡", "脉络", "华夫格", "编织", "褶皱", "之字形",
]  # fmt: skip

_CIFAR100_EN = [
    "chimpanzee", "trout", "skunk", "spider", "chair", "tank", "keyboard", "man", "whale", "lobster",
    "house", "beetle", "bear", "shrew", "bottle", "cup", "bus", "orange", "sea", "oak tree",
    "bed", "tulip", "rabbit", "skyscraper", "apple", "maple tree", "pine tree", "snail", "pear", "bridge",
    "train", "mountain", "caterpillar", "crocodile", "snake", "kangaroo", "dolphin", "cattle", "raccoon", "mushroom",
    "hamster", "bowl", "lamp", "rocket", "pickup truck", "wolf", "worm", "otter", "sunflower", "leopard",
    "ray", "lawn mower", "motorcycle", "boy", "fox", "palm tree", "cloud", "dinosaur", "turtle", "forest",
    "couch", "poppy", "rose", "bee", "girl", "clock", "can", "table", "road", "orchid",
    "streetcar", "squirrel", "crab", "butterfly", "tractor", "beaver", "willow tree", "camel", "plain", "mouse",
    "elephant", "flatfish", "sweet pepper", "plate", "television", "aquarium fish", "wardrobe", "seal", "lizard",
    "cockroach", "porcupine", "woman", "possum", "baby", "tiger", "telephone", "shark", "lion", "castle", "bicycle",
]  # fmt: skip
_CIFAR100_ZH = [
    "黑猩猩", "鳟鱼", "臭鼬", "蜘蛛", "椅子", "坦克", "键盘", "男人", "鲸鱼", "龙虾",
    "房子", "甲虫", "熊", "鼩鼱", "瓶子", "杯子", "公共汽车", "橙子", "大海", "橡树",
    "床", "郁金香", "兔子", "摩天大楼", "苹果", "枫树", "松树", "蜗牛", "梨", "桥",
    "火车", "山", "毛毛虫", "鳄鱼", "蛇", "袋鼠", "海豚", "牛", "浣熊", "蘑菇",
    "仓鼠", "碗", "台灯", "火箭", "皮卡车", "狼", "蠕虫", "水獭", "向日葵", "豹子",
    "鳐鱼", "割草机", "摩托车", "男孩", "狐狸", "棕榈树", "云", "恐龙", "乌龟", "森林",
    "长沙发", "罂粟花", "玫瑰", "蜜蜂", "女孩", "时钟", "易拉罐", "桌子", "道路", "兰花",
    "有轨电车", "松鼠", "螃蟹", "蝴蝶", "拖拉机", "河狸", "柳树", "骆驼", "平原", "老鼠",
    "大象", "比目鱼", "甜椒", "盘子", "电视机", "观赏鱼", "衣柜", "海豹", "蜥蜴",
    "蟑螂", "豪猪", "女人", "负鼠", "婴儿", "老虎", "电话", "鲨鱼", "狮子", "城堡", "自行车",
]  # fmt: skip

_GTSRB_EN = [
    "20 km/h speed limit", "30 km/h speed limit", "50 km/h speed limit", "60 km/h speed limit",
    "70 km/h speed limit", "80 km/h speed limit", "end of the 80 km/h speed limit", "100 km/h speed limit",
    "120 km/h speed limit", "no overtaking", "no overtaking for trucks", "crossroads ahead", "priority road",
    "give way", "stop", "no vehicles", "no trucks", "no entry", "general danger", "dangerous curve to the left",
    "dangerous curve to the right", "double curve", "uneven road", "slippery road", "road narrows",
    "road works", "traffic lights ahead", "pedestrians", "children crossing", "cyclists", "ice or snow",
    "wild animals crossing", "end of all restrictions", "turn right ahead", "turn left ahead", "ahead only",
    "go straight or right", "go straight or left", "keep right", "keep left", "roundabout",
    "end of no overtaking", "end of no overtaking for trucks",
]  # fmt: skip
_GTSRB_ZH = [
    "限速20公里", "限速30公里", "限速50公里", "限速60公里",
    "限速70公里", "限速80公里", "解除限速80公里", "限速100公里",
    "限速120公里", "禁止超车", "货车禁止超车", "前方交叉路口", "优先道路",
    "减速让行", "停车让行", "禁止车辆通行", "禁止货车通行", "禁止驶入", "注意危险", "向左急弯",
    "向右急弯", "连续弯路", "路面不平", "路面湿滑", "道路变窄",
    "道路施工", "前方信号灯", "注意行人", "注意儿童", "注意自行车", "注意冰雪",
    "注意野生动物", "解除全部限制", "前方右转", "前方左转", "只准直行",
    "直行或右转", "直行或左转", "靠右行驶", "靠左行驶", "环岛行驶",
    "解除禁止超车", "解除货车禁止超车",
]  # fmt: skip

_RESISC45_EN = [
    "airplane", "airport", "baseball field", "basketball court", "beach", "bridge", "chaparral", "church",
    "circular farmland", "cloud", "commercial area", "dense residential area", "desert", "forest", "freeway",
    "golf course", "athletics track", "harbor", "industrial area", "road intersection", "island", "lake", "meadow",
    "medium-density residential area", "mobile home park", "mountain", "overpass", "palace", "parking lot",
    "railway", "railway station", "rectangular farmland", "river", "roundabout", "runway", "sea ice", "ship",
    "iceberg", "sparse residential area", "stadium", "storage tanks", "tennis court", "terraced field",
    "thermal power station", "wetland",
]  # fmt: skip
_RESISC45_ZH = [
    "飞机", "机场", "棒球场", "篮球场", "海滩", "桥梁", "灌木丛", "教堂",
    "圆形农田", "云", "商业区", "密集住宅区", "沙漠", "森林", "高速公路",
    "高尔夫球场", "田径场", "港口", "工业区", "十字路口", "岛屿", "湖泊", "草地",
    "中密度住宅区", "移动房屋营地", "山", "立交桥", "宫殿", "停车场",
    "铁路", "火车站", "矩形农田", "河流", "环岛", "跑道", "海冰", "船",
    "冰山", "稀疏住宅区", "体育场", "储油罐", "网球场", "梯田",
    "火力发电站", "湿地",
]  # fmt: skip

_PETS_EN = [
    "Abyssinian cat", "American bulldog", "American pit bull terrier", "basset hound", "beagle", "Bengal cat",
    "Birman cat", "Bombay cat", "boxer dog", "British shorthair cat", "chihuahua", "Egyptian mau cat",
    "English cocker spaniel", "English setter", "German shorthaired pointer", "Great Pyrenees", "Havanese",
    "Japanese chin", "keeshond", "Leonberger", "Maine coon cat", "miniature pinscher", "Newfoundland dog",
    "Persian cat", "Pomeranian", "pug", "Ragdoll cat", "Russian blue cat", "Saint Bernard", "Samoyed",
    "Scottish terrier", "Shiba Inu", "Siamese cat", "Sphynx cat", "Staffordshire bull terrier",
    "soft-coated wheaten terrier", "Yorkshire terrier",
]  # fmt: skip
_PETS_ZH = [
    "阿比西尼亚猫", "美国斗牛犬", "美国比特斗牛梗", "巴吉度猎犬", "比格犬", "孟加拉猫",
    "伯曼猫", "孟买猫", "拳师犬", "英国短毛猫", "吉娃娃", "埃及猫",
    "英国可卡犬", "英国塞特犬", "德国短毛指示犬", "大白熊犬", "哈瓦那犬",
    "日本狆", "荷兰毛狮犬", "莱昂贝格犬", "缅因猫", "迷你杜宾犬", "纽芬兰犬",
    "波斯猫", "博美犬", "巴哥犬", "布偶猫", "俄罗斯蓝猫", "圣伯纳犬", "萨摩耶犬",
    "苏格兰梗", "柴犬", "暹罗猫", "斯芬克斯猫", "斯塔福郡斗牛梗",
    "软毛麦色梗", "约克夏梗",
]  # fmt: skip

ELEVATER_DATASET_METRICS: dict[str, str] = {
    "caltech-101": "mean-per-class",
    "cifar-10": "accuracy",
    "cifar-100": "accuracy",
    "country211": "accuracy",
    "dtd": "accuracy",
    "eurosat_clip": "accuracy",
    "fer-2013": "accuracy",
    "fgvc-aircraft-2013b-variants102": "mean-per-class",
    "food-101": "accuracy",
    "gtsrb": "accuracy",
    "hateful-memes": "roc_auc",
    "kitti-distance": "accuracy",
    "mnist": "accuracy",
    "oxford-flower-102": "mean-per-class",
    "oxford-iiit-pets": "mean-per-class",
    "patch-camelyon": "accuracy",
    "rendered-sst2": "accuracy",
    "resisc45_clip": "accuracy",
    "stanford-cars": "accuracy",
    "voc-2007-classification": "11point_mAP",
}

BUILTIN_PROMPTS: dict[str, dict] = {
    "cifar-10": {
        "en": {
            "classnames": ["airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "templates": [
                "a photo of a {}.", "a small photo of a {}.", "a low-resolution photo of the {}.",
                "a blurry photo of a {}.", "a cropped photo of the {}.", "a pixelated photo of a {}.",
            ],
        },
        "zh": {
            "classnames": ["飞机", "汽车", "鸟", "猫", "鹿", "狗", "青蛙", "马", "船", "卡车"],
            "templates": [
                "一张{}的照片。", "一张{}的小照片。", "一张低分辨率的{}的照片。",
                "一张模糊的{}的照片。", "一张裁剪过的{}的照片。", "一张像素化的{}的照片。",
            ],
        },
    },
    "cifar-100": {
        "en": {
            "classnames": _CIFAR100_EN,
            "templates": ["a photo of a {}.", "a small photo of the {}.", "a low-resolution photo of a {}."],
        },
        "zh": {"classnames": _CIFAR100_ZH, "templates": ["一张{}的照片。", "一张{}的小照片。", "一张低分辨率的{}的照片。"]},
    },
    "mnist": {
        "en": {
            "classnames": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            "templates": [
                "a photo of the handwritten digit {}.", "a handwritten number {}.", "the digit {} written by hand.",
            ],
        },
        "zh": {
            "classnames": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            "templates": ["手写数字{}的照片。", "一个手写的数字{}。", "手写的{}。"],
        },
    },
    "eurosat_clip": {
        "en": {
            "classnames": [
                "annual crop fields", "forest", "shrubland", "a highway", "an industrial area", "pasture",
                "permanent crop fields", "a residential area", "a river", "a sea or lake",
            ],
            "templates": ["a satellite photo of {}.", "a satellite image showing {}.", "an aerial view of {}."],
        },
        "zh": {
            "classnames": [
                "一年生作物农田", "森林", "灌木地", "公路", "工业区", "牧场",
                "多年生作物农田", "住宅区", "河流", "海洋或湖泊",
            ],
            "templates": ["{}的卫星照片。", "一张显示{}的卫星图像。", "{}的航拍图。"],
        },
    },
    "dtd": {
        "en": {
            "classnames": _TEXTURE_EN,
            "templates": ["a photo of a {} texture.", "a close-up of a {} surface.", "a {} pattern."],
        },
        "zh": {
            "classnames": _TEXTURE_ZH,
            "templates": ["一张{}纹理的照片。", "{}表面的特写。", "{}图案。"],
        },
    },
    "fer-2013": {
        "en": {
            "classnames": ["angry", "disgusted", "scared", "happy", "calm", "sad", "surprised"],
            "templates": ["a photo of a {} face.", "a face that looks {}.", "a person looking {}."],
        },
        "zh": {
            "classnames": ["生气", "厌恶", "害怕", "开心", "平静", "悲伤", "惊讶"],
            "templates": ["一张{}的脸的照片。", "一张看起来{}的脸。", "一个看起来很{}的人。"],
        },
    },
    "kitti-distance": {
        "en": {
            "classnames": [
                "a street photo with a car right beside the camera.",
                "a street photo with a car close by.",
                "a street photo with a car far away.",
                "a street photo with no car in it.",
            ],
            "templates": ["{}"],
        },
        "zh": {
            "classnames": [
                "一张旁边紧挨着一辆汽车的街景照片。",
                "一张附近有一辆汽车的街景照片。",
                "一张远处有一辆汽车的街景照片。",
                "一张没有汽车的街景照片。",
            ],
            "templates": ["{}"],
        },
    },
    "patch-camelyon": {
        "en": {
            "classnames": ["healthy lymph node tissue", "lymph node tissue with metastatic tumor cells"],
            "templates": ["a histology image of {}.", "a microscope slide of {}."],
        },
        "zh": {
            "classnames": ["正常的淋巴结组织", "含有转移性肿瘤细胞的淋巴结组织"],
            "templates": ["{}的病理切片图像。", "{}的显微镜图片。"],
        },
    },
    "rendered-sst2": {
        "en": {"classnames": ["negative", "positive"], "templates": ["a {} movie review.", "text of a {} film review."]},
        "zh": {"classnames": ["负面", "正面"], "templates": ["一条{}的影评。", "一段{}的电影评论文字。"]},
    },
    "hateful-memes": {
        "en": {"classnames": ["harmless meme", "hateful meme"], "templates": ["a {}.", "an image of a {}."]},
        "zh": {"classnames": ["无害的表情包", "仇恨言论表情包"], "templates": ["一张{}。", "一张{}图片。"]},
    },
    "voc-2007-classification": {
        "en": {
            "classnames": [
                "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table",
                "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
            ],
            "templates": ["a photo of a {}.", "a photo containing a {}."],
        },
        "zh": {
            "classnames": [
                "飞机", "自行车", "鸟", "船", "瓶子", "公共汽车", "汽车", "猫", "椅子", "牛", "餐桌",
                "狗", "马", "摩托车", "人", "盆栽植物", "羊", "沙发", "火车", "电视显示器",
            ],
            "templates": ["一张{}的照片。", "一张包含{}的照片。"],
        },
    },
    "gtsrb": {
        "en": {
            "classnames": _GTSRB_EN,
            "templates": ['a photo of a "{}" traffic sign.', 'a close-up of the "{}" road sign.'],
        },
        "zh": {"classnames": _GTSRB_ZH, "templates": ["一张“{}”交通标志的照片。", "“{}”路标的特写。"]},
    },
    "resisc45_clip": {
        "en": {"classnames": _RESISC45_EN, "templates": ["a satellite photo of a {}.", "an aerial view of a {}."]},
        "zh": {"classnames": _RESISC45_ZH, "templates": ["{}的卫星照片。", "{}的航拍图。"]},
    },
    "oxford-iiit-pets": {
        "en": {"classnames": _PETS_EN, "templates": ["a photo of a {}, a kind of pet.", "a photo of my pet, a {}."]},
        "zh": {"classnames": _PETS_ZH, "templates": ["一张{}的照片，一种宠物。", "我的宠物{}的照片。"]},
    },
}
