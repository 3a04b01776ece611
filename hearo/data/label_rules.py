"""The reviewed label table: (package, member glob) -> class key, hard negative or background.

Every rule here applies the written rules in the docstring of :mod:`hearo.data.labels`;
review the two together. Rules are tried in order and the first match wins.
"""

from __future__ import annotations

from hearo.data.label_rule import BACKGROUND, NEGATIVE, LabelRule, package_rules

_HW = "usr/share/games/hedgewars/Data/"
_WES = "usr/share/games/wesnoth/1.16/data/core/sounds/"
_BLOB = "usr/share/games/blobwars/sound/"
_WMX = "usr/share/games/warmux/"
_DINK = "usr/share/games/dink/dink/Sound/"
_STX = "usr/share/games/supertux2/"
_BT = "usr/share/games/btanks/data/"
_FDR = "usr/share/freedroidrpg/data/sound/"
_RE = "usr/share/games/redeclipse/data/sounds/"
_CUBE = "usr/share/games/cube2/packages/"
_MG = "usr/share/games/megaglest/"
_WL = "usr/share/games/widelands/data/"
_7KAA = "usr/share/games/7kaa/SOUND/"
_STK = "usr/share/games/supertuxkart/data/"
# 0 A.D. keeps its data in one zip; members inside it are "<zip member>/<path in zip>".
_0AD = "usr/share/games/0ad/mods/public/public.zip/audio/"
_WESM = "usr/share/games/wesnoth/1.16/data/core/music/"
_AST = "usr/share/asterisk/sounds/"
# Nexuiz keeps its data in one zip (a .pk3); members inside it are "<pk3 member>/<path in zip>".
_NEX = "usr/share/games/nexuiz/data/data.pk3/sound/"
_BZ = "usr/share/games/bzflag/"
_BSU = "usr/share/games/chromium-bsu/wav/"
_ETR = "usr/share/games/etr/"
# megaglest units that are people (its monsters, animals and machines are unused).
_MG_PEOPLE = (
    "archer", "archmage", "axe_thrower", "battlemage", "guard", "initiate", "princess", "shaman",
    "spearman", "stickfighter", "summoner", "swordman", "technician", "valkyrie", "worker",
)

LABEL_RULES: tuple[LabelRule, ...] = tuple(
    package_rules("hedgewars-data", _HW, [
        ("Sounds/voices/*/Ow[1-4].ogg", "crime"),
        ("Sounds/voices/*/Ouch.ogg", "crime"),
        ("Sounds/voices/*/Nooo.ogg", "crime"),
        ("Sounds/voices/*/Firepunch*.ogg", "crime"),
        ("Sounds/voices/*/PoisonCough.ogg", "medical"),
        ("Sounds/voices/*/PoisonMoan.ogg", "medical"),
        ("Sounds/voices/*/Leavemealone.ogg", "help"),
        ("Sounds/voices/*/Takecover.ogg", BACKGROUND),
        ("Sounds/voices/*/Laugh.ogg", NEGATIVE),
        ("Sounds/voices/*/Hello.ogg", NEGATIVE),
        ("Sounds/voices/*/Hurry.ogg", NEGATIVE),
        ("Sounds/voices/*/Watchit.ogg", NEGATIVE),
        ("Sounds/voices/*/Excellent.ogg", BACKGROUND),
        ("Sounds/voices/*/Amazing.ogg", BACKGROUND),
        ("Sounds/voices/*/Boring.ogg", BACKGROUND),
        ("Sounds/voices/*/Victory.ogg", BACKGROUND),
        ("Sounds/shotgunfire.ogg", "crime"),
        ("Sounds/minigun.ogg", "crime"),
        ("Sounds/gun.ogg", "crime"),
        ("Sounds/baseballbat.ogg", "crime"),
        ("Sounds/firepunch_hit.ogg", "crime"),
        ("Sounds/hammer.ogg", NEGATIVE),
        ("Sounds/steam.ogg", "gas"),
        ("Sounds/blowtorch.ogg", "gas"),
        ("Sounds/flamethrower.ogg", "fire"),
        ("Sounds/graveimpact.ogg", "accident"),
        ("Sounds/bump.ogg", NEGATIVE),
        ("Sounds/beep.ogg", NEGATIVE),
        ("Sounds/countdown*.ogg", NEGATIVE),
        ("Sounds/minetick.ogg", NEGATIVE),
        ("Sounds/steps.ogg", NEGATIVE),
        ("Sounds/Whistle.ogg", NEGATIVE),
        ("Sounds/[1-9][A-G].ogg", NEGATIVE),
        ("Music/*.ogg", BACKGROUND),
    ])
    + package_rules("wesnoth-1.16-data", _WES, [
        ("human-die-*", "crime"),
        ("human-female-die-*", "crime"),
        ("human-old-die-*", "crime"),
        ("groan.wav", "medical"),
        ("wail-sml.wav", "medical"),
        ("gunshot.wav", "crime"),
        ("thunderstick.ogg", "crime"),
        ("fist.ogg", "crime"),
        ("mace.*", "crime"),
        ("hiss.wav", "gas"),
        ("hiss-big.wav", "gas"),
        ("lightning*.ogg", NEGATIVE),
        ("fire.wav", "fire"),
        ("torch.ogg", "fire"),
        ("flame-big.ogg", "fire"),
        ("ambient/campfire.ogg", "fire"),
        ("rumble.ogg", "accident"),
        ("human-hit-*", "crime"),
        ("human-female-hit-*", "crime"),
        ("horse-canter.wav", NEGATIVE),
        ("ambient/*", BACKGROUND),
    ])
    + package_rules("blobwars-data", _BLOB, [
        ("death[1-3]", "crime"),
        ("pistol", "crime"),
        ("machinegun", "crime"),
        ("punch", "crime"),
        ("clang", "trapped"),
        ("electricity[1-3]", "electric"),
        ("elecDeath[1-3]", "electric"),
        ("fireCrackle", "fire"),
        ("drowning", "medical"),
        ("stoneBreak", "accident"),
        ("doorOpen*", NEGATIVE),
        ("clock", NEGATIVE),
        ("cheer", BACKGROUND),
        ("rain", BACKGROUND),
    ])
    + package_rules("warmux-data", _WMX, [
        ("sound/*/voices/death*", "crime"),
        ("sound/*/voices/injured_high*", "crime"),
        ("sound/*/voices/injured_medium*", "crime"),
        ("sound/*/voices/injured_light*", "crime"),
        ("sound/*/weapons/m16.ogg", "crime"),
        ("sound/*/weapons/gun.ogg", "crime"),
        ("sound/*/weapons/shotgun.ogg", "crime"),
        ("sound/*/weapons/slap.ogg", "crime"),
        ("sound/*/weapons/baseball.ogg", "crime"),
        ("sound/*/weapons/anvil_collision.ogg", "trapped"),
        ("sound/*/weapons/embers*.ogg", "fire"),
        ("sound/*/weapons/flame.ogg", "fire"),
        ("sound/*/weapons/blowtorch.ogg", "gas"),
        ("sound/*/weapons/anvil_fall.ogg", "accident"),
        ("sound/*/misc/box_falling.ogg", "accident"),
        ("sound/*/misc/box_hitting_ground.ogg", "accident"),
        ("sound/*/weapons/mine_beep.ogg", NEGATIVE),
        ("sound/*/misc/countdown-endturn.ogg", NEGATIVE),
        ("sound/*/misc/step.ogg", NEGATIVE),
        ("sound/*/voices/theme*", NEGATIVE),
        ("music/ingame/*.ogg", BACKGROUND),
    ])
    + package_rules("freedink-data", _DINK, [
        ("wscream.wav", "crime"),
        ("punch.wav", "crime"),
        ("fire.wav", "fire"),
        ("burn.wav", "fire"),
        ("open.wav", NEGATIVE),
        ("stairs.wav", NEGATIVE),
        ("*.ogg", BACKGROUND),
    ])
    + package_rules("supertux-data", _STX, [
        ("sounds/crystallo-shatter.ogg", "crime"),
        ("sounds/icecrash.ogg", "crime"),
        ("sounds/cracking.wav", "crime"),
        ("sounds/fizz.wav", "electric"),
        ("sounds/lightning.wav", NEGATIVE),
        ("sounds/pshit.ogg", "gas"),
        ("sounds/sizzle.ogg", "fire"),
        ("sounds/fire.ogg", "fire"),
        ("sounds/flame.wav", "fire"),
        ("sounds/thud.ogg", "accident"),
        ("sounds/fall.wav", "accident"),
        ("sounds/brick.wav", "accident"),
        ("sounds/phone.wav", NEGATIVE),
        ("sounds/ticking.wav", NEGATIVE),
        ("sounds/savebell*.wav", NEGATIVE),
        ("sounds/door.wav", NEGATIVE),
        ("sounds/coin*.ogg", NEGATIVE),
        ("sounds/rain.wav", BACKGROUND),
        ("sounds/waterfall.wav", BACKGROUND),
        ("speech/*.ogg", BACKGROUND),
        ("music/*.ogg", BACKGROUND),
    ])
    + package_rules("btanks-data", _BT, [
        ("sounds/kamikaze-scream.ogg", "crime"),
        ("sounds/shot.ogg", "crime"),
        ("sounds/machinegunner-bullet.ogg", "crime"),
        ("sounds/fire.ogg", "fire"),
        ("sounds/building-explosion*.ogg", "accident"),
        ("sounds/klaxon*.ogg", NEGATIVE),
        ("sounds/laugh0*.ogg", NEGATIVE),
        ("sounds/mine-tick.ogg", NEGATIVE),
        ("sounds/man-steps.ogg", NEGATIVE),
        ("sounds/ambient/*.ogg", BACKGROUND),
        ("tunes/*.ogg", BACKGROUND),
    ])
    + package_rules("freedroidrpg-data", _FDR, [
        ("effects/Glass_Break.ogg", "crime"),
        ("effects/Influencer_Scream_Sound_*", "crime"),
        ("effects/swing_then_hit_*", "crime"),
        ("effects/tux_footstep.ogg", NEGATIVE),
        ("effects/MenuClick.ogg", NEGATIVE),
        ("effects/open_chest_sound.ogg", NEGATIVE),
        ("effects/tux_ingame_comments/*.ogg", BACKGROUND),
        ("music/*.ogg", BACKGROUND),
    ])
    + package_rules("redeclipse-data", _RE, [
        ("voice/argh*.ogg", "crime"),
        ("player/death*.ogg", "crime"),
        ("player/pain*.ogg", "crime"),
        ("weapons/pistol/primary*.ogg", "crime"),
        ("weapons/rifle/primary*.ogg", "crime"),
        ("weapons/shotgun/primary*.ogg", "crime"),
        ("weapons/smg/primary*.ogg", "crime"),
        ("weapons/thwack*.ogg", "crime"),
        ("ambience/electro.ogg", "electric"),
        ("ambience/hum.ogg", BACKGROUND),
        ("weapons/bzap.ogg", "electric"),
        ("weapons/bzzt.ogg", "electric"),
        ("weapons/hum.ogg", BACKGROUND),
        ("weapons/zapper/*.ogg", "electric"),
        ("sfx/shockdamage.ogg", "electric"),
        ("ambience/vapour.ogg", "gas"),
        ("ambience/pneumatic.ogg", "gas"),
        ("sfx/extinguish*.ogg", "gas"),
        ("ambience/fire.ogg", "fire"),
        ("sfx/burning.ogg", "fire"),
        ("sfx/burnfire.ogg", "fire"),
        ("weapons/thud*.ogg", "accident"),
        ("player/land*.ogg", "accident"),
        ("sfx/debris*.ogg", "accident"),
        ("sfx/alarm.ogg", NEGATIVE),
        ("sfx/error.ogg", NEGATIVE),
        ("player/footstep*.ogg", NEGATIVE),
        ("player/concstep*.ogg", NEGATIVE),
        ("voice/haha*.ogg", NEGATIVE),
        ("voice/thanks*.ogg", NEGATIVE),
        ("ambience/forest*.ogg", BACKGROUND),
        ("ambience/river.ogg", BACKGROUND),
        ("ambience/creek.ogg", BACKGROUND),
        ("ambience/distant_cars.ogg", BACKGROUND),
        ("ambience/nightcrickets.ogg", BACKGROUND),
        ("ambience/machine*.ogg", BACKGROUND),
        ("ambience/water*.ogg", BACKGROUND),
        ("ambience/*wind*.ogg", BACKGROUND),
        ("ambience/morph/rain.ogg", BACKGROUND),
    ])
    + package_rules("cube2-data", _CUBE, [
        ("sounds/aard/pain*.wav", "crime"),
        ("sounds/aard/die*.wav", "crime"),
        ("sounds/q009/pistol*.ogg", "crime"),
        ("sounds/q009/rifle*.ogg", "crime"),
        ("sounds/q009/shotgun*.ogg", "crime"),
        ("sounds/q009/minigun*.ogg", "crime"),
        ("sounds/aard/bang.wav", "trapped"),
        ("sounds/olpc/MichaelBierylo/sfx_DoorSlam.wav", "trapped"),
        ("sounds/sfx/burning.ogg", "fire"),
        ("sounds/aard/land.wav", "accident"),
        ("music/*.ogg", BACKGROUND),
        # sounds/0ad/* are copies of 0ad-data files: that package labels them.
    ])
    + package_rules("megaglest-data", _MG, [
        *((f"techs/*/{unit}_die*.wav", "crime") for unit in _MG_PEOPLE),
        ("techs/*/magician/sounds/die*.wav", "crime"),
        ("techs/*/anvil*.wav", "trapped"),
        ("techs/*/wicker_fire.wav", "fire"),
        ("techs/*/tech_building_fall*.wav", "accident"),
        ("techs/*/magic_building_fall*.wav", "accident"),
        ("data/core/menu/sound/attention.wav", NEGATIVE),
        ("data/core/menu/sound/sonar.wav", NEGATIVE),
        ("tilesets/*/sounds/*day.ogg", BACKGROUND),
        ("tilesets/*/sounds/*night*.ogg", BACKGROUND),
        ("tilesets/*/sounds/rain.ogg", BACKGROUND),
        ("tilesets/*/sounds/wind.ogg", BACKGROUND),
        ("data/core/water_sounds/*", BACKGROUND),
        ("data/core/menu/music/*", BACKGROUND),
        ("techs/*/music/*", BACKGROUND),
    ])
    + package_rules("widelands-data", _WL, [
        ("sound/hammering/*.ogg", NEGATIVE),
        ("sound/woodcutting/tree_falling_*.ogg", "accident"),
        ("sound/other/falling_tools_*.ogg", "accident"),
        ("sound/message_*.ogg", NEGATIVE),
        ("sound/military/*.ogg", NEGATIVE),
        ("sound/animals/*.ogg", BACKGROUND),
        ("music/*.ogg", BACKGROUND),
    ])
    + package_rules("7kaa-data", _7KAA, [
        ("FIRE.WAV", "fire"),
        ("QUAKE.WAV", "accident"),
        ("WIND.WAV", BACKGROUND),
        ("RAIN.WAV", BACKGROUND),
    ])
    + package_rules("supertuxkart-data", _STK, [
        ("sfx/WilhelmScream.ogg", "crime"),
        ("sfx/hammer.ogg", NEGATIVE),
        ("sfx/metal_clang.ogg", "trapped"),
        ("sfx/anvil.ogg", "trapped"),
        ("sfx/bzzt.ogg", "electric"),
        ("tracks/stk_enterprise/bzzt2.ogg", "electric"),
        ("sfx/static-radio.ogg", BACKGROUND),
        ("sfx/ugh.ogg", "medical"),
        ("sfx/crash*.ogg", "accident"),
        ("sfx/horn.ogg", NEGATIVE),
        ("sfx/goal_scored.ogg", NEGATIVE),
        ("sfx/clock.ogg", NEGATIVE),
        ("sfx/pre_start_race.ogg", NEGATIVE),
        ("sfx/start_race.ogg", NEGATIVE),
        ("sfx/last_lap_fanfare.ogg", NEGATIVE),
        ("sfx/rain.ogg", BACKGROUND),
        ("sfx/exotic-birds*.ogg", BACKGROUND),
        ("sfx/lenautile_restaurant.ogg", BACKGROUND),
        ("sfx/sara_airport_pa.ogg", BACKGROUND),
        ("sfx/river_loop.ogg", BACKGROUND),
        ("sfx/waterfall_loop_2.ogg", BACKGROUND),
        ("music/*.ogg", BACKGROUND),
    ])
    + package_rules("0ad-data", _0AD, [
        ("actor/human/death/*.ogg", "crime"),
        ("attack/weapon/Musket*.ogg", "crime"),
        ("attack/impact/flesh*.ogg", "crime"),
        ("resource/mining/mine_metal_*.ogg", "trapped"),
        ("attack/impact/shield_metal_*.ogg", "trapped"),
        # crackling_fire.xml and spreading_fire.xml: burning buildings, 5 s of crackle each.
        ("attack/fire/c_*.ogg", "fire"),
        ("attack/fire/sp_*.ogg", "fire"),
        ("attack/destruction/building_collapse*.ogg", "accident"),
        ("attack/destruction/explode_debris*.ogg", "accident"),
        ("interface/alarm/*.ogg", NEGATIVE),
        ("interface/ui/chat_alert.ogg", NEGATIVE),
        ("resource/construction/*.ogg", NEGATIVE),
        ("actor/singlesteps/*.ogg", NEGATIVE),
        ("actor/human/movement/*.ogg", NEGATIVE),
        ("actor/gate/stonegate_close*.ogg", NEGATIVE),
        ("ambient/*.ogg", BACKGROUND),
        ("music/*.ogg", BACKGROUND),
        ("voice/*.ogg", BACKGROUND),
    ])
    + package_rules("wesnoth-1.16-music", _WESM, [("*.ogg", BACKGROUND)])
    + package_rules("asterisk-core-sounds-es-wav", _AST, [("es*/*.wav", BACKGROUND)])
    + package_rules("asterisk-core-sounds-fr-wav", _AST, [("fr*/*.wav", BACKGROUND)])
    + package_rules("asterisk-core-sounds-it-wav", _AST, [("it_IT*/*.wav", BACKGROUND)])
    + package_rules("asterisk-core-sounds-ru-wav", _AST, [("ru_RU*/*.wav", BACKGROUND)])
    + package_rules("asterisk-prompt-it-menardi-wav", _AST, [("it_IT*/*.wav", BACKGROUND)])
    + package_rules("nexuiz-data", _NEX, [
        ("player/*/player/death*.ogg", "crime"),
        ("player/*/player/pain*.ogg", "crime"),
        ("player/*/player/gasp.ogg", "medical"),
        ("player/*/player/drown.ogg", "medical"),
        ("player/*/coms/needhelp*.ogg", "help"),
        ("player/*/coms/*.ogg", BACKGROUND),
        ("weapons/campingrifle_fire*.ogg", "crime"),
        ("weapons/shotgun_fire.ogg", "crime"),
        ("weapons/uzi_fire.ogg", "crime"),
        ("ambient/sparks*.ogg", "electric"),
        ("onslaught/ons_spark*.ogg", "electric"),
        ("onslaught/electricity_explode.ogg", "electric"),
        ("desertfactory/steam_burst.wav", "gas"),
        ("desertfactory/steam_loop.wav", "gas"),
        ("misc/bodyimpact*.wav", "accident"),
        ("misc/hitground*.ogg", "accident"),
        ("misc/footstep*.wav", NEGATIVE),
        ("misc/metalfootstep*.wav", NEGATIVE),
        ("kh/alarm.wav", NEGATIVE),
        ("ctf/*.wav", NEGATIVE),
        ("announcer/*.ogg", BACKGROUND),
        ("ambient/fan*.ogg", BACKGROUND),
        ("ambient/machine*.ogg", BACKGROUND),
        ("ambient/transformer.ogg", BACKGROUND),
        ("ambient/water.ogg", BACKGROUND),
        ("desertfactory/*_loop.wav", BACKGROUND),
    ])
    + package_rules("bzflag-data", _BZ, [
        ("flag_*.wav", NEGATIVE),
        ("message_*.wav", NEGATIVE),
        ("teleport.wav", NEGATIVE),
        ("pop.wav", NEGATIVE),
        ("lock.wav", NEGATIVE),
    ])
    + package_rules("chromium-bsu-data", _BSU, [
        ("life_add.wav", NEGATIVE),
        ("power.wav", NEGATIVE),
        ("music_*.wav", BACKGROUND),
    ])
    + package_rules("extremetuxracer-data", _ETR, [
        ("sounds/*_slide.wav", NEGATIVE),
        ("sounds/pickup*.wav", NEGATIVE),
        ("music/*.ogg", BACKGROUND),
    ])
    + package_rules("xmoto-data", "usr/share/games/xmoto/Textures/Musics/", [("*.ogg", BACKGROUND)])
    # Household system sounds: chimes, phone, camera shutter, error and message beeps.
    + package_rules("gnome-audio", "usr/share/sounds/", [("*.wav", NEGATIVE)])
    + package_rules("deepin-sound-theme", "usr/share/sounds/deepin/", [("*.wav", NEGATIVE)])
    + package_rules("sound-icons", "usr/share/sounds/sound-icons/", [("*.wav", NEGATIVE)])
)
